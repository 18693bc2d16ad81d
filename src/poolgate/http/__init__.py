"""Our HTTP/1.1 server (the gateway listeners) and client (upstreams, scrapes), on httptools."""
