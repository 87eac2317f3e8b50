//go:build tools

// Package node pins the kubelet of Conch's real dev node: the same Kubernetes
// release and staging replaces as the control plane, in a module of its own so
// the control plane's go.sum (and cache key) stay as they are.
package node

import (
	_ "k8s.io/kubernetes/cmd/kubelet"
)
