"""Orca imaging intake: the one domain package shared by every function and service.

Pure logic (keys, auth, sniffing, metadata) takes bytes or models and returns models;
data access lives in `repository` and turns SDK errors into `orca_imaging.errors`.
"""
