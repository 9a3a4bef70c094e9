package controllers

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
)

var (
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
)

// Metrics are rolekeeper's Prometheus metrics: calls to STS (and ECR), counted as they are
// made, and the state of every AssumedRole, read from a reader (the manager's cache) at scrape
// time, so that a deleted AssumedRole leaves no series behind.
type Metrics struct {
	stsRequests *prometheus.CounterVec
	stsDuration *prometheus.HistogramVec
	identity    *prometheus.GaugeVec
	state       *stateCollector
}

// NewMetrics returns the metrics of one operator, whose AssumedRoles reader holds.
func NewMetrics(reader client.Reader) *Metrics {
	return &Metrics{
		stsRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rolekeeper_sts_requests_total",
			Help: "Calls to AWS STS by operation and outcome (OK or the AWS error code).",
		}, []string{"operation", "code"}),
		stsDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rolekeeper_sts_request_duration_seconds",
			Help:    "Duration of calls to AWS STS, rate-limit wait and SDK retries included.",
			Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}, []string{"operation"}),
		identity: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rolekeeper_operator_identity_info",
			Help: "The operator's own AWS identity, value 1: its kind (role-session, iam-user, ...), where its credentials come from (source: web-identity, roles-anywhere, static-keys, ...) and its ARN. Never a credential.",
		}, []string{"kind", "source", "arn"}),
		state: &stateCollector{reader: reader},
	}
}

// Register registers the metrics with reg (controller-runtime's metrics.Registry in the manager).
func (m *Metrics) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.stsRequests, m.stsDuration, m.identity, m.state} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// ObserveSTS records one call; it is the pkg/sts Options.Observe hook.
func (m *Metrics) ObserveSTS(operation, code string, took time.Duration) {
	m.stsRequests.WithLabelValues(operation, code).Inc()
	m.stsDuration.WithLabelValues(operation).Observe(took.Seconds())
}

// ObserveIdentity records the operator's own identity, replacing the one before; it is called
// from the pkg/sts Options.OnIdentity hook.
func (m *Metrics) ObserveIdentity(kind, source, arn string) {
	m.identity.Reset()
	m.identity.WithLabelValues(kind, source, arn).Set(1)
}

// stateCollector reads AssumedRoles at scrape time.
type stateCollector struct {
	reader client.Reader
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- expirationDesc
	ch <- renewalDesc
	ch <- readyDesc
	ch <- stalledDesc
	ch <- failedAttemptsDesc
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var list rkv1.AssumedRoleList
	// Read without copies: the scrape only reads, and copying every AssumedRole on each scrape
	// would allocate as much as the whole cache every interval.
	if err := c.reader.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
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
