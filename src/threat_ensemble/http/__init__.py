"""Raw HTTP traffic (request dumps, access logs) to one feature row per request."""

# Kept here, light to import, for the CLI's --help as well as the featurizer.
FORMATS = ("auto", "raw", "common", "combined")
# How far a client's windows reach: every file given under one option (per format) as one stream,
# the rotated logs of one server (featurize.py's default), or each file alone.
WINDOW_SCOPES = ("stream", "file")
