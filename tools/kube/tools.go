//go:build tools

// Package tools pins the Kubernetes control-plane programs the tests run.
package tools

import (
	_ "github.com/k3s-io/kine"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
