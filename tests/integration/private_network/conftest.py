"""Tests against DICOM peers that bind every interface (Orthanc, dcmqrscp). They run only
inside a network namespace that holds nothing but loopback, where
`tests/integration/test_private_network.py` starts them; collected anywhere else they would
open ports on the machine's real interfaces."""

import os

INSIDE = os.environ.get("ORCA_PRIVATE_NETWORK") == "1"

if not INSIDE:
    collect_ignore_glob = ["test_*.py"]
