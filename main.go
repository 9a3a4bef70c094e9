// Command rolekeeper is the manager of the rolekeeper operator: it keeps AWS temporary credentials
// fresh in Secrets for every AssumedRole in the cluster.
package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/rolekeeper/rolekeeper/controllers"
	"github.com/rolekeeper/rolekeeper/pkg/credserver"
	"github.com/rolekeeper/rolekeeper/pkg/memtrim"
	"github.com/rolekeeper/rolekeeper/pkg/metricsauth"
	"github.com/rolekeeper/rolekeeper/pkg/sts"
	"github.com/rolekeeper/rolekeeper/webhooks"
)

// flags are the manager's command-line settings (DESIGN.md, "Operator flags").
type flags struct {
	region                 string
	stsEndpoint            string
	useFIPSEndpoint        bool
	useDualStackEndpoint   bool
	stsQPS                 float64
	stsBurst               int
	ecrEndpoint            string
	maxConcurrent          int
	watchNamespaces        string
	requireAccessPolicy    bool
	sessionTags            bool
	clusterName            string
	leaderElect            bool
	leaderElectionID       string
	leaderElectionNS       string
	leaseDuration          time.Duration
	renewDeadline          time.Duration
	retryPeriod            time.Duration
	metricsBindAddress     string
	metricsSecure          bool
	metricsCertDir         string
	healthProbeBindAddress string
	pprofBindAddress       string
	// webhook is the credentials injection webhook (webhooks.Options.BindFlags).
	webhook webhooks.Options
	// identity is the operator's own AWS identity (identity.go).
	identity identityFlags
}

func parseFlags(fs *flag.FlagSet, args []string) (*flags, error) {
	f := &flags{}
	fs.StringVar(&f.region, "region", os.Getenv("AWS_REGION"), "Default AWS region for AssumedRoles that set none (default: $AWS_REGION). AssumeRoot needs a region.")
	fs.StringVar(&f.stsEndpoint, "sts-endpoint", "", "Override the STS endpoint URL for every call (for example a VPC endpoint). Empty: the SDK's regional endpoint.")
	fs.StringVar(&f.ecrEndpoint, "ecr-endpoint", "", "Override the Amazon ECR endpoint URL used for image-pull Secrets (for example a VPC endpoint). Empty: the SDK's regional endpoint.")
	fs.BoolVar(&f.useFIPSEndpoint, "use-fips-endpoint", false, "Call the FIPS variant of the STS endpoint.")
	fs.BoolVar(&f.useDualStackEndpoint, "use-dualstack-endpoint", false, "Call the dual-stack (IPv6) variant of the STS endpoint.")
	fs.Float64Var(&f.stsQPS, "sts-qps", 20, "Client-side limit on STS calls per second, shared by all AssumedRoles.")
	fs.IntVar(&f.stsBurst, "sts-burst", 40, "Burst allowed above --sts-qps.")
	fs.IntVar(&f.maxConcurrent, "max-concurrent-reconciles", 4, "AssumedRoles reconciled in parallel.")
	fs.StringVar(&f.watchNamespaces, "watch-namespaces", "", "Comma-separated namespaces to watch. Empty: all namespaces.")
	fs.BoolVar(&f.requireAccessPolicy, "require-access-policy", true, "Issue credentials only when an AssumedRolePolicy allows the request.")
	fs.BoolVar(&f.sessionTags, "session-tags", true, "Add session tags kubernetes-namespace and kubernetes-name (and kubernetes-cluster with --cluster-name) to every AssumeRole call.")
	fs.StringVar(&f.clusterName, "cluster-name", "", "Value of the kubernetes-cluster session tag; empty: the tag is not sent.")
	fs.BoolVar(&f.leaderElect, "leader-elect", false, "Use leader election so that only one replica calls STS.")
	fs.StringVar(&f.leaderElectionID, "leader-election-id", "rolekeeper.rolekeeper.io", "Name of the leader election Lease.")
	fs.StringVar(&f.leaderElectionNS, "leader-election-namespace", "", "Namespace of the leader election Lease (default: the pod's namespace).")
	fs.DurationVar(&f.leaseDuration, "leader-election-lease-duration", 15*time.Second, "How long a lost leader's lease blocks the other replicas.")
	fs.DurationVar(&f.renewDeadline, "leader-election-renew-deadline", 10*time.Second, "How long the leader keeps trying to renew (for example while the API server restarts) before it stops and exits.")
	fs.DurationVar(&f.retryPeriod, "leader-election-retry-period", 2*time.Second, "How often replicas try to acquire or renew the lease.")
	fs.StringVar(&f.metricsBindAddress, "metrics-bind-address", ":8080", "Address of the Prometheus metrics endpoint; 0 disables it.")
	fs.BoolVar(&f.metricsSecure, "metrics-secure", false, "Serve metrics over HTTPS, only to clients whose bearer token the API server authenticates (TokenReview) and authorizes for GET /metrics (SubjectAccessReview).")
	fs.StringVar(&f.metricsCertDir, "metrics-cert-dir", "", "With --metrics-secure: directory holding tls.crt and tls.key for the metrics endpoint, reloaded when they change. Empty: a self-signed certificate.")
	fs.StringVar(&f.healthProbeBindAddress, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz endpoints; 0 disables them.")
	fs.StringVar(&f.pprofBindAddress, "pprof-bind-address", "0", "Address of the Go profiling endpoints (/debug/pprof/); 0 (the default) disables them. It is unauthenticated: bind it to localhost, for example 127.0.0.1:8082.")
	f.webhook.BindFlags(fs)
	f.identity.register(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return f, f.validate()
}

func (f *flags) validate() error {
	var errs []error
	if f.region != "" && !sts.ValidRegion(f.region) {
		errs = append(errs, fmt.Errorf("--region %q is not an AWS region code such as us-east-1", f.region))
	}
	if f.stsQPS <= 0 {
		errs = append(errs, fmt.Errorf("--sts-qps must be positive, got %v", f.stsQPS))
	}
	if f.stsBurst < 1 {
		errs = append(errs, fmt.Errorf("--sts-burst must be at least 1, got %d", f.stsBurst))
	}
	if f.maxConcurrent < 1 {
		errs = append(errs, fmt.Errorf("--max-concurrent-reconciles must be at least 1, got %d", f.maxConcurrent))
	}
	if f.leaderElect && (f.retryPeriod <= 0 || f.renewDeadline <= f.retryPeriod || f.leaseDuration <= f.renewDeadline) {
		errs = append(errs, fmt.Errorf("leader election needs 0 < --leader-election-retry-period < --leader-election-renew-deadline < --leader-election-lease-duration, got %v, %v, %v", f.retryPeriod, f.renewDeadline, f.leaseDuration))
	}
	for _, e := range []struct{ name, url string }{{"--sts-endpoint", f.stsEndpoint}, {"--ecr-endpoint", f.ecrEndpoint}} {
		if e.url != "" && !strings.HasPrefix(e.url, "https://") && !strings.HasPrefix(e.url, "http://") {
			errs = append(errs, fmt.Errorf("%s must be a URL starting with https:// (or http:// for a local test endpoint), got %q", e.name, e.url))
		}
	}
	if f.metricsCertDir != "" && !f.metricsSecure {
		errs = append(errs, fmt.Errorf("--metrics-cert-dir needs --metrics-secure"))
	}
	if err := f.identity.validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(append(errs, f.webhook.Validate())...)
}

// metricsOptions serves metrics over plain HTTP, or with --metrics-secure over HTTPS behind
// controller-runtime's authentication and authorization filter, as kubebuilder's scaffold does.
func (f *flags) metricsOptions() metricsserver.Options {
	o := metricsserver.Options{BindAddress: f.metricsBindAddress}
	if f.metricsSecure {
		o.SecureServing = true
		o.FilterProvider = metricsauth.Filter
		o.CertDir = f.metricsCertDir
		// HTTP/1.1 only: HTTP/2's rapid reset and stream cancellation (CVE-2023-44487,
		// CVE-2023-39325) are not worth it for a scrape endpoint.
		o.TLSOpts = []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }}
	}
	return o
}

func (f *flags) namespaces() []string {
	var out []string
	for _, ns := range strings.Split(f.watchNamespaces, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			out = append(out, ns)
		}
	}
	return out
}

func main() {
	// The credentials sidecar runs from the same image; it initialises nothing of the manager.
	if len(os.Args) > 1 && os.Args[1] == "serve-credentials" {
		os.Exit(credserver.Main(os.Args[2:]))
	}
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	f, err := parseFlags(flag.CommandLine, os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "rolekeeper:", err)
		os.Exit(2)
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	if limit, ok := softMemoryLimit(os.Getenv("GOMEMLIMIT"), os.Getenv("ROLEKEEPER_MEMORY_LIMIT")); ok {
		debug.SetMemoryLimit(limit)
		ctrl.Log.WithName("setup").Info("Go memory limit set from the container's", "bytes", limit)
	}
	if err := run(f); err != nil {
		ctrl.Log.Error(err, "manager stopped")
		os.Exit(1)
	}
}

// softMemoryLimit is the Go runtime's memory limit for a container limited to containerLimit
// bytes (ROLEKEEPER_MEMORY_LIMIT, which the chart and config/manager fill from the container's
// limits.memory): 80% of it, leaving room for what the runtime does not count (the executable's
// pages, the kernel's buffers), so the collector works harder before the container is killed.
// An explicit GOMEMLIMIT wins.
func softMemoryLimit(gomemlimit, containerLimit string) (int64, bool) {
	if gomemlimit != "" || containerLimit == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(containerLimit, 10, 64)
	if err != nil || n <= 0 {
		return 0, false
	}
	return n / 5 * 4, true
}

// clientConfig is the API client configuration: from --kubeconfig, $KUBECONFIG or in-cluster.
// Responses are not gzipped. The API server would compress every watch event it sends (the
// operator's own Secret and status writes come back on its watches) and the operator would
// inflate each one: CPU on both sides, for credentials that hardly compress, over the cluster
// network. On a busy control plane that CPU is what limits how fast N issuances land. The
// transport lets the cache decode the watches of the operator's own kinds (controllers.CacheOptions).
func clientConfig() (*rest.Config, error) {
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig: %w", err)
	}
	cfg.DisableCompression = true
	cfg.Wrap(controllers.WatchTransport)
	return cfg, nil
}

func run(f *flags) error {
	log := ctrl.Log.WithName("setup")
	cfg, err := clientConfig()
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  controllers.NewScheme(),
		Cache:                   controllers.CacheOptions(f.namespaces()),
		MapperProvider:          controllers.NewRESTMapper,
		Metrics:                 f.metricsOptions(),
		HealthProbeBindAddress:  f.healthProbeBindAddress,
		PprofBindAddress:        f.pprofBindAddress,
		WebhookServer:           f.webhook.Server(),
		LeaderElection:          f.leaderElect,
		LeaderElectionID:        f.leaderElectionID,
		LeaderElectionNamespace: f.leaderElectionNS,
		LeaseDuration:           &f.leaseDuration,
		RenewDeadline:           &f.renewDeadline,
		RetryPeriod:             &f.retryPeriod,
		// A leader that steps down stops calling STS at once; the next one reads state from the
		// Secrets, so nothing is lost by releasing the lease on shutdown.
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	ctx := ctrl.SetupSignalHandler()
	metrics := controllers.NewMetrics(mgr.GetClient())
	if err := metrics.Register(ctrlmetrics.Registry); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	stsClient, err := f.identity.load(ctx, sts.Options{
		Region:       f.region,
		Endpoint:     f.stsEndpoint,
		ECREndpoint:  f.ecrEndpoint,
		UseFIPS:      f.useFIPSEndpoint,
		UseDualStack: f.useDualStackEndpoint,
		QPS:          f.stsQPS,
		Burst:        f.stsBurst,
		Observe:      metrics.ObserveSTS,
		OnIdentity: func(id sts.Identity) {
			log.Info("operator AWS identity", "arn", id.Arn, "kind", id.Kind(), "source", id.Source, "roleChaining", id.RoleSession())
			metrics.ObserveIdentity(id.Kind(), id.Source, id.Arn)
		},
	})
	if err != nil {
		return err
	}
	// Learn who the operator is (one GetCallerIdentity): as a role session (IRSA, EKS Pod
	// Identity, an instance profile) every session it assumes is capped at one hour. Not knowing
	// yet stops nothing; the identity is asked again when it is needed.
	if _, err := stsClient.OwnIdentity(ctx); err != nil {
		log.Error(err, "could not learn the operator's own AWS identity (GetCallerIdentity); will ask again when needed")
	}
	opts := controllers.Options{
		Region:                  f.region,
		RequireAccessPolicy:     f.requireAccessPolicy,
		SessionTags:             f.sessionTags,
		ClusterName:             f.clusterName,
		MaxConcurrentReconciles: f.maxConcurrent,
		WatchNamespaces:         f.namespaces(),
	}
	reconciler := &controllers.AssumedRoleReconciler{Client: mgr.GetClient(), STS: stsClient, Options: opts}
	if err := reconciler.SetupWithManager(ctx, mgr); err != nil {
		return fmt.Errorf("setting up the AssumedRole controller: %w", err)
	}
	if err := (&controllers.ClusterAssumedRoleReconciler{Client: mgr.GetClient(), Options: opts}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the ClusterAssumedRole controller: %w", err)
	}
	if err := webhooks.Setup(mgr, f.webhook, f.region, f.namespaces()); err != nil {
		return err
	}
	// The heap a burst of issuances grew is handed back once the burst is over.
	if err := mgr.Add(memtrim.New()); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	log.Info("starting manager", "region", f.region, "watchNamespaces", f.namespaces(), "requireAccessPolicy", f.requireAccessPolicy, "leaderElect", f.leaderElect)
	return mgr.Start(ctx)
}
