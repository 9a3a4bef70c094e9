package controllers

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
)

var (
	stsRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rolekeeper_sts_requests_total",
		Help: "Calls to AWS STS by operation and outcome (OK or the AWS error code).",
	}, []string{"operation", "code"})
	stsDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "rolekeeper_sts_request_duration_seconds",
		Help:    "Duration of calls to AWS STS, rate-limit wait and SDK retries included.",
		Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
	}, []string{"operation"})
	operatorIdentity = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "rolekeeper_operator_identity_info",
		Help: "The operator's own AWS identity, value 1: its kind (role-session, iam-user, ...), where its credentials come from (source: web-identity, roles-anywhere, static-keys, ...) and its ARN. Never a credential.",
	}, []string{"kind", "source", "arn"})

	expirationDesc = prometheus.NewDesc("rolekeeper_credentials_expiration_timestamp_seconds",
		"When the credentials in the AssumedRole's Secret expire (Unix time).", []string{"namespace", "name"}, nil)
	renewalDesc = prometheus.NewDesc("rolekeeper_credentials_renewal_timestamp_seconds",
		"When the AssumedRole's credentials will next be issued (Unix time).", []string{"namespace", "name"}, nil)
	readyDesc = prometheus.NewDesc("rolekeeper_assumedrole_ready",
		"1 when the AssumedRole's Ready condition is True, else 0.", []string{"namespace", "name"}, nil)
	stalledDesc = prometheus.NewDesc("rolekeeper_assumedrole_stalled",
		"1 when the AssumedRole's Stalled condition is True (issuing waits for a change to the spec, a policy or AWS), else 0.", []string{"namespace", "name"}, nil)
	failedAttemptsDesc = prometheus.NewDesc("rolekeeper_assumedrole_failed_attempts",
		"Failed issuance attempts since the AssumedRole's last success (status.failedAttempts).", []string{"namespace", "name"}, nil)

	registerOnce sync.Once
	collector    = &stateCollector{}
)

// ObserveSTS records one STS call; it is the pkg/sts Options.Observe hook.
func ObserveSTS(operation, code string, took time.Duration) {
	stsRequests.WithLabelValues(operation, code).Inc()
	stsDuration.WithLabelValues(operation).Observe(took.Seconds())
}

// ObserveIdentity records the operator's own identity, replacing the one before; it is called
// from the pkg/sts Options.OnIdentity hook.
func ObserveIdentity(kind, source, arn string) {
	operatorIdentity.Reset()
	operatorIdentity.WithLabelValues(kind, source, arn).Set(1)
}

// RegisterStateCollector registers the metrics with controller-runtime's registry once, and
// points the state collector at reader (the manager's cache).
func RegisterStateCollector(reader client.Reader) {
	collector.reader.Store(&reader)
	registerOnce.Do(func() {
		ctrlmetrics.Registry.MustRegister(stsRequests, stsDuration, operatorIdentity, collector)
	})
}

// stateCollector reads AssumedRoles from the cache at scrape time, so a deleted AssumedRole
// leaves no stale series behind.
type stateCollector struct {
	reader atomic.Pointer[client.Reader]
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- expirationDesc
	ch <- renewalDesc
	ch <- readyDesc
	ch <- stalledDesc
	ch <- failedAttemptsDesc
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	r := c.reader.Load()
	if r == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var list rkv1.AssumedRoleList
	if err := (*r).List(ctx, &list); err != nil {
		return
	}
	for i := range list.Items {
		ar := &list.Items[i]
		ready := 0.0
		if meta.IsStatusConditionTrue(ar.Status.Conditions, rkv1.ConditionReady) {
			ready = 1
		}
		ch <- prometheus.MustNewConstMetric(readyDesc, prometheus.GaugeValue, ready, ar.Namespace, ar.Name)
		stalled := 0.0
		if meta.IsStatusConditionTrue(ar.Status.Conditions, rkv1.ConditionStalled) {
			stalled = 1
		}
		ch <- prometheus.MustNewConstMetric(stalledDesc, prometheus.GaugeValue, stalled, ar.Namespace, ar.Name)
		ch <- prometheus.MustNewConstMetric(failedAttemptsDesc, prometheus.GaugeValue, float64(ar.Status.FailedAttempts), ar.Namespace, ar.Name)
		if t := ar.Status.Expiration; t != nil {
			ch <- prometheus.MustNewConstMetric(expirationDesc, prometheus.GaugeValue, float64(t.Unix()), ar.Namespace, ar.Name)
		}
		if t := ar.Status.RenewalTime; t != nil {
			ch <- prometheus.MustNewConstMetric(renewalDesc, prometheus.GaugeValue, float64(t.Unix()), ar.Namespace, ar.Name)
		}
	}
}
