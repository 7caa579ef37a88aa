"""qvd-client, the desktop client."""
