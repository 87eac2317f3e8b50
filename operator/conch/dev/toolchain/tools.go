//go:build tools

// Package toolchain pins the Kubernetes control-plane binaries that Conch's
// tests and local sandbox run. It is never imported; `go build` reads it.
package toolchain

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
