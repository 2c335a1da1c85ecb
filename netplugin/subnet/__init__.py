"""Subnet leases: which node owns which slice of the cluster network, kept in etcd like flannel."""
