"""iTero sync: the scheduled connector run and `POST /3d/itero/sync`."""
