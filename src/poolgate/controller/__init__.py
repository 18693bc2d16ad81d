"""The gateway as a Kubernetes controller: which objects are its business (scope), building from
them (source), the status they should have (status) and writing it (writer)."""
