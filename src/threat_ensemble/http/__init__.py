"""Raw HTTP traffic (request dumps, access logs) to one feature row per request."""
