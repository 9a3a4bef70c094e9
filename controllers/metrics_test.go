package controllers_test

import (
	"context"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
)

// State metrics come from the cache at scrape time; STS calls are counted by outcome.
func TestMetrics(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ststest.Options{})
	h.start()
	h.assumedRole("app", nil)
	ar := h.waitCondition("app", rkv1.ConditionReady, metav1.ConditionTrue, "", 30*time.Second)
	var found map[string]float64
	h.eventually(10*time.Second, "state metrics for the AssumedRole", func() bool {
		found = h.gather("app")
		return found["rolekeeper_assumedrole_ready"] == 1
	})
	if got := found["rolekeeper_credentials_expiration_timestamp_seconds"]; got != float64(ar.Status.Expiration.Unix()) {
		t.Errorf("expiration metric %v, status %v", got, ar.Status.Expiration.Unix())
	}
	if got := found["rolekeeper_credentials_renewal_timestamp_seconds"]; got != float64(ar.Status.RenewalTime.Unix()) {
		t.Errorf("renewal metric %v, status %v", got, ar.Status.RenewalTime.Unix())
	}
	families, err := h.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	ok := false
	for _, f := range families {
		if f.GetName() == "rolekeeper_sts_requests_total" {
			for _, m := range f.GetMetric() {
				ok = ok || labelsOf(m)["operation"] == "AssumeRole" && labelsOf(m)["code"] == "OK" && m.GetCounter().GetValue() >= 1
			}
		}
	}
	if !ok {
		t.Error("no rolekeeper_sts_requests_total{operation=AssumeRole,code=OK}")
	}
	if err := k8s.Delete(context.Background(), ar); err != nil {
		t.Fatal(err)
	}
	h.eventually(10*time.Second, "series of the deleted AssumedRole gone", func() bool { return len(h.gather("app")) == 0 })
}

func labelsOf(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// gather reads the state metrics of one AssumedRole of the test's namespace.
func (h *harness) gather(name string) map[string]float64 {
	h.t.Helper()
	families, err := h.registry.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	ns := h.ns
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			if l := labelsOf(m); l["namespace"] == ns && l["name"] == name {
				out[f.GetName()] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}
