// Package webhooks registers rolekeeper's admission webhook: a mutating webhook on Pod creation
// that injects the credentials sidecar (pkg/inject) into pods labelled
// rolekeeper.io/assumed-role, and the handling of its serving certificates (certs.go).
package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/inject"
)

// PodPath is where the API server sends pod admission requests (config/webhook/manifests.yaml).
const PodPath = "/mutate-v1-pod-credentials"

// PodInjector is the admission handler. The webhook configuration's objectSelector sends it only
// pods labelled rolekeeper.io/assumed-role.
type PodInjector struct {
	// Reader reads AssumedRoles; an uncached reader, so an AssumedRole applied together with
	// its pods is seen.
	Reader client.Reader
	// Image and ImagePullPolicy of the sidecar: the operator's own image.
	Image           string
	ImagePullPolicy corev1.PullPolicy
	// DefaultRegion is the operator's --region, for AssumedRoles that set none.
	DefaultRegion string
	// WatchNamespaces are the operator's --watch-namespaces (empty: all); a labelled pod
	// elsewhere would wait for credentials that never come, so it is refused.
	WatchNamespaces []string

	decoder  admission.Decoder
	requests atomic.Int64
}

// NewPodInjector completes h (built with its exported fields) to decode with scheme.
func NewPodInjector(scheme *runtime.Scheme, h *PodInjector) *PodInjector {
	h.decoder = admission.NewDecoder(scheme)
	return h
}

// Requests counts the admission requests this handler received.
func (h *PodInjector) Requests() int64 { return h.requests.Load() }

func denied(format string, a ...any) admission.Response {
	return admission.Denied("rolekeeper: " + fmt.Sprintf(format, a...))
}

// Handle injects the sidecar, or refuses the pod with a reason naming rolekeeper.
func (h *PodInjector) Handle(ctx context.Context, req admission.Request) admission.Response {
	h.requests.Add(1)
	pod := &corev1.Pod{}
	if err := h.decoder.Decode(req, pod); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	name, ok := pod.Labels[inject.LabelAssumedRole]
	if !ok {
		return admission.Allowed("not labelled " + inject.LabelAssumedRole)
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return denied("label %s must name an AssumedRole in namespace %s: %s", inject.LabelAssumedRole, req.Namespace, strings.Join(errs, "; "))
	}
	if len(h.WatchNamespaces) > 0 && !slices.Contains(h.WatchNamespaces, req.Namespace) {
		return denied("the operator does not watch namespace %s (--watch-namespaces), so AssumedRole %s would never get credentials", req.Namespace, name)
	}
	cfg := inject.Config{Image: h.Image, ImagePullPolicy: h.ImagePullPolicy, SecretName: name, Region: h.DefaultRegion}
	var warnings []string
	ar := &rkv1.AssumedRole{}
	switch err := h.Reader.Get(ctx, client.ObjectKey{Namespace: req.Namespace, Name: name}, ar); {
	case apierrors.IsNotFound(err):
		warnings = append(warnings, fmt.Sprintf("rolekeeper: AssumedRole %s/%s does not exist yet; the pod mounts Secret %s (the default name) and waits until it exists", req.Namespace, name, name))
	case err != nil:
		return denied("reading AssumedRole %s/%s: %v", req.Namespace, name, err)
	default:
		if ar.Spec.Secret.Type == corev1.SecretTypeDockerConfigJson {
			return denied("AssumedRole %s writes an image-pull Secret, which holds no AWS credentials; label the pod with an AssumedRole of type Opaque", name)
		}
		if ar.Spec.Secret.Name != "" {
			cfg.SecretName = ar.Spec.Secret.Name
		}
		if ar.Spec.Region != "" {
			cfg.Region = ar.Spec.Region
		}
	}
	mutated, err := inject.Mutate(pod, cfg)
	if err != nil {
		return denied("%v", err)
	}
	raw, err := json.Marshal(mutated)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	return admission.PatchResponseFromRaw(req.Object.Raw, raw).WithWarnings(warnings...)
}
