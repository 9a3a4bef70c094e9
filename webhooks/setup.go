package webhooks

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"strings"

	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
)

// Names of the objects config/webhook and the Helm chart install.
const (
	// ConfigurationName is the MutatingWebhookConfiguration.
	ConfigurationName = "rolekeeper-credentials"
	// WebhookName is its one webhook; the API server names it when it refuses a pod because
	// the webhook cannot be reached.
	WebhookName = "credentials.rolekeeper.io"
)

// Options are the manager flags of the webhook.
type Options struct {
	// Port of the webhook server; 0 disables the webhook.
	Port    int
	CertDir string
	// CertSecret (namespace/name) is where cert-controller keeps the CA and serving
	// certificate, mounted at CertDir; empty means the certificate is provided (cert-manager).
	CertSecret string
	// Service (namespace/name) is the webhook's Service: the certificate's DNS name.
	Service string
	// CertExtraNames are further DNS names in the generated certificate (tests reach the
	// webhook as localhost).
	CertExtraNames []string
	// Configuration is the MutatingWebhookConfiguration cert-controller injects the CA into.
	Configuration     string
	SidecarImage      string
	SidecarPullPolicy string
}

// BindFlags adds the webhook's flags to fs.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.IntVar(&o.Port, "webhook-port", 0, "Port of the credentials injection webhook (HTTPS); 0 disables it.")
	fs.StringVar(&o.CertDir, "webhook-cert-dir", "/tmp/k8s-webhook-server/serving-certs", "Directory holding the webhook's tls.crt and tls.key.")
	fs.StringVar(&o.CertSecret, "webhook-cert-secret", "", "Secret (namespace/name) in which the operator generates and rotates the webhook's CA and certificate (cert-controller), mounted at --webhook-cert-dir. Empty: the certificate is provided, for example by cert-manager.")
	fs.StringVar(&o.Service, "webhook-service", "", "The webhook's Service (namespace/name), the name in its certificate; needed with --webhook-cert-secret.")
	fs.StringVar(&o.Configuration, "webhook-configuration", ConfigurationName, "MutatingWebhookConfiguration whose caBundle the operator keeps current (with --webhook-cert-secret).")
	fs.StringVar(&o.SidecarImage, "sidecar-image", "", "Image of the injected credentials sidecar: the operator's own image. Required with --webhook-port.")
	fs.StringVar(&o.SidecarPullPolicy, "sidecar-image-pull-policy", string(corev1.PullIfNotPresent), "imagePullPolicy of the injected sidecar.")
}

func splitName(flagName, v string) (types.NamespacedName, error) {
	ns, name, ok := strings.Cut(v, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return types.NamespacedName{}, fmt.Errorf("%s must be namespace/name, got %q", flagName, v)
	}
	return types.NamespacedName{Namespace: ns, Name: name}, nil
}

// Validate checks the flags.
func (o *Options) Validate() error {
	if o.Port == 0 {
		return nil
	}
	var errs []error
	if o.Port < 1 || o.Port > 65535 {
		errs = append(errs, fmt.Errorf("--webhook-port must be 0-65535, got %d", o.Port))
	}
	if o.SidecarImage == "" {
		errs = append(errs, errors.New("--sidecar-image is required with --webhook-port: set it to the operator's own image"))
	}
	switch corev1.PullPolicy(o.SidecarPullPolicy) {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		errs = append(errs, fmt.Errorf("--sidecar-image-pull-policy must be Always, IfNotPresent or Never, got %q", o.SidecarPullPolicy))
	}
	if o.CertSecret != "" {
		if _, err := splitName("--webhook-cert-secret", o.CertSecret); err != nil {
			errs = append(errs, err)
		}
		if _, err := splitName("--webhook-service", o.Service); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Server returns the webhook server for the manager's options, or nil when disabled.
func (o *Options) Server() webhook.Server {
	if o.Port == 0 {
		return nil
	}
	return webhook.NewServer(webhook.Options{Port: o.Port, CertDir: o.CertDir})
}

// Setup registers the pod webhook with mgr once its certificate is in place, with
// cert-controller generating and rotating it when --webhook-cert-secret is set, and adds a
// readiness check that passes only once the webhook serves. region and namespaces are the
// operator's --region and --watch-namespaces.
func Setup(mgr ctrl.Manager, o Options, region string, namespaces []string) error {
	if o.Port == 0 {
		return nil
	}
	certsReady := make(chan struct{})
	if o.CertSecret == "" {
		close(certsReady)
	} else {
		secret, _ := splitName("--webhook-cert-secret", o.CertSecret)
		svc, _ := splitName("--webhook-service", o.Service)
		if err := rotator.AddRotator(mgr, &rotator.CertRotator{
			SecretKey:      secret,
			CertDir:        o.CertDir,
			CAName:         "rolekeeper-webhook-ca",
			CAOrganization: "rolekeeper",
			DNSName:        svc.Name + "." + svc.Namespace + ".svc",
			ExtraDNSNames:  append([]string{svc.Name + "." + svc.Namespace + ".svc.cluster.local"}, o.CertExtraNames...),
			IsReady:        certsReady,
			Webhooks:       []rotator.WebhookInfo{{Name: o.Configuration, Type: rotator.Mutating}},
			// Every replica serves the webhook, so every replica needs the certificate.
			RequireLeaderElection: false,
			ControllerName:        "webhook-cert-rotator",
		}); err != nil {
			return fmt.Errorf("setting up webhook certificate rotation: %w", err)
		}
	}
	injector := NewPodInjector(mgr.GetScheme(), &PodInjector{
		Reader:          mgr.GetAPIReader(),
		Image:           o.SidecarImage,
		ImagePullPolicy: corev1.PullPolicy(o.SidecarPullPolicy),
		DefaultRegion:   region,
		WatchNamespaces: namespaces,
	})
	// The webhook server reads its certificate when it starts, so it is added to the manager
	// (by GetWebhookServer) only once the certificate exists.
	go func() {
		<-certsReady
		mgr.GetWebhookServer().Register(PodPath, &webhook.Admission{Handler: injector})
	}()
	return mgr.AddReadyzCheck("webhook", func(req *http.Request) error {
		select {
		case <-certsReady:
			return mgr.GetWebhookServer().StartedChecker()(req)
		default:
			return errors.New("the webhook certificate is not ready")
		}
	})
}
