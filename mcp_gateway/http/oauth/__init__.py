"""The gateway's own OAuth server for /mcp: metadata, registration, consent, and the SDK's token endpoints."""
