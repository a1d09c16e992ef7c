"""Redis deployments past one server: Sentinel (and Cluster), real redis-servers."""
