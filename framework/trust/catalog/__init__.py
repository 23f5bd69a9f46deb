"""The signed capability catalog: definitions, Ed25519 signing, the catalog in
Redis (with revocation), and the trusted keys of a running process."""
