package run

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// noDefaultSA answers a pod create as ServiceAccount admission does in a
// namespace kube-controller-manager has not given its "default" service
// account yet, the first `times` times (all of them when times < 0).
func noDefaultSA(c *fake.Clientset, times int32) *atomic.Int32 {
	var calls atomic.Int32
	c.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if n := calls.Add(1); times >= 0 && n > times {
			return false, nil, nil
		}
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "w-preflight-x",
			fmt.Errorf("error looking up service account %s/default: %w", a.GetNamespace(), apierrors.NewNotFound(schema.GroupResource{Resource: "serviceaccount"}, "default")))
	})
	return &calls
}

// A run started right after `kubectl create namespace`: the preflight
// waits for the namespace's service account instead of calling the worker
// rejected; one that never comes is an error that says what is missing.
func TestPreflightWaitsForTheNamespacesServiceAccount(t *testing.T) {
	defer func(w time.Duration) { ServiceAccountWait = w }(ServiceAccountWait)
	ServiceAccountWait = 2 * time.Second
	job := nodeJobs("pf", "n1")[0].Job
	for _, mode := range []Mode{ModeJobs, ModePods} {
		c := fake.NewClientset()
		calls := noDefaultSA(c, 3)
		if err := Preflight(context.Background(), c, job, mode); err != nil {
			t.Errorf("%s: %v, want nil once the service account is there", mode, err)
		}
		if calls.Load() != 4 {
			t.Errorf("%s: %d pod dry-runs, want 4 (3 refused, then admitted)", mode, calls.Load())
		}
	}
	ServiceAccountWait = 300 * time.Millisecond
	c := fake.NewClientset()
	noDefaultSA(c, -1)
	err := Preflight(context.Background(), c, job, ModeJobs)
	if err == nil || !strings.Contains(err.Error(), "error looking up service account") || !strings.Contains(err.Error(), "serviceaccount controller") {
		t.Fatalf("got %v, want the refusal and what to check", err)
	}
	if strings.Contains(err.Error(), "RBAC") {
		t.Errorf("a missing service account is not a permission: %v", err)
	}
	t.Log(err)
}
