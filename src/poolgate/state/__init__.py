"""poolgate.state: state shared across replicas: expiring concurrency leases (in memory or Redis)."""
