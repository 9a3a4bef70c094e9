package controllers

import (
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/selection"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/secretdata"
	"github.com/rolekeeper/rolekeeper/pkg/watchdecode"
)

// What the operator's cache holds is most of its memory: an AssumedRole and its Secret for each
// AssumedRole, for as long as it exists. The transforms below keep of each object what the
// operator reads, and let objects share the strings they have in common (key names, namespaces,
// reasons), which decoding gives each object a copy of.

// CacheOptions caches only the Secrets the operator owns (labelled rolekeeper.io/assumed-role),
// and of those only what compactSecret keeps: caching every Secret in a cluster costs memory in
// proportion to all of them. AssumedRoles are kept as compactAssumedRole makes them; other
// objects without their managed fields, which the operator never reads: they are a large part of
// each object, and would be held for every one and copied on every read. (An update of a cached
// object leaves them unchanged: nil means no change.) With namespaces, namespaced objects are
// watched only there.
func CacheOptions(namespaces []string) cache.Options {
	owned, err := labels.NewRequirement(rkv1.LabelAssumedRole, selection.Exists, nil)
	if err != nil {
		panic(err) // a constant, valid requirement
	}
	opts := cache.Options{
		NewInformer:      newInformer,
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}:    {Label: labels.NewSelector().Add(*owned), Transform: compactSecret},
			&rkv1.AssumedRole{}: {Transform: compactAssumedRole},
		},
	}
	if len(namespaces) > 0 {
		opts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range namespaces {
			opts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	return opts
}

// newInformer is client-go's informer, with the watches of the operator's own kinds decoded by
// watchdecode when the REST config carries WatchTransport: client-go's decoding of AssumedRole
// events took a sixth of the operator's CPU while it issued (see package watchdecode). Other
// kinds (Secrets, served as protobuf; metadata-only and unstructured objects) are decoded by
// client-go.
func newInformer(lw toolscache.ListerWatcher, obj runtime.Object, resync time.Duration, indexers toolscache.Indexers) toolscache.SharedIndexInformer {
	if gvk, ok := ownKind(obj); ok {
		lw = watchdecode.ListerWatcher(lw, gvk, func() runtime.Object {
			o, err := ownScheme.New(gvk)
			if err != nil {
				panic(err) // ownKind found gvk in ownScheme
			}
			return o
		})
	}
	return toolscache.NewSharedIndexInformer(lw, obj, resync, indexers)
}

// ownScheme knows the operator's kinds alone, for ownKind and the objects the watches decode
// into: NewScheme's Kubernetes kinds would only cost start-up time and memory here.
var ownScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(rkv1.AddToScheme(s))
	return s
}()

// ownKind is obj's kind when it is a typed object of the operator's API group.
func ownKind(obj runtime.Object) (schema.GroupVersionKind, bool) {
	switch obj.(type) {
	case runtime.Unstructured, *metav1.PartialObjectMetadata:
		return schema.GroupVersionKind{}, false
	}
	gvks, _, err := ownScheme.ObjectKinds(obj)
	if err != nil || len(gvks) != 1 || gvks[0].Group != rkv1.GroupVersion.Group {
		return schema.GroupVersionKind{}, false
	}
	return gvks[0], true
}

// WatchTransport is the transport wrapper (rest.Config.Wrap) the operator's REST config needs
// for newInformer to decode the watches of its own kinds.
var WatchTransport = watchdecode.Transport

// annotationCachedNote is set on the cache's copy of a Secret, never on a Secret: the note of
// what its data held (cacheNote), whose values the cache does not keep. The key has a space,
// which the API server refuses in an annotation key: no Secret read from it carries one, so its
// presence marks the cache's copy (the informer may hand an object it holds back to the
// transform), and a write built from a cached copy by mistake would be refused, not stored.
const annotationCachedNote = "rolekeeper.io/cached data"

// compactSecret is what the cache keeps of an owned Secret: its metadata (without managed
// fields) and its type, and of its data only a note (cacheNote): a digest of the data and
// whether it held credentials or a registry login. The credentials are the bulk of a Secret (the
// session token is in it twice or three times: the key, the credentials file,
// credential_process.json), and no decision needs them: the operator compares the digest with
// the one it recorded when it wrote the Secret, and reads the Secret past the cache on the rare
// paths that need its values (a repair, a chain's source).
func compactSecret(obj any) (any, error) {
	s, ok := obj.(*corev1.Secret)
	if !ok {
		return obj, nil
	}
	s.ManagedFields = nil
	if _, done := s.Annotations[annotationCachedNote]; done {
		return s, nil
	}
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	s.Annotations[annotationCachedNote] = cacheNote(s)
	s.Data = nil
	shareMeta(&s.ObjectMeta)
	s.Type = corev1.SecretType(shared.of(string(s.Type)))
	return s, nil
}

// A cache note is the data's digest followed by what the data held: noteCredentials when the
// access key, secret key and session token are there and the expiry key holds the time the stamp
// annotation records; noteRegistryLogin when the image-pull key is there. Data whose expiry key
// says otherwise than the stamp gets a note with no digest, which vouches for nothing: such a
// Secret is judged on a live read, as before caching.
const (
	noteCredentials   = "+credentials"
	noteRegistryLogin = "+registry-login"
)

func cacheNote(s *corev1.Secret) string {
	note := secretdata.DataDigest(s.Data)
	if _, ok := secretdata.CredentialsPresent(s.Data); ok {
		if string(s.Data[secretdata.KeyCredentialExpiration]) != s.Annotations[rkv1.AnnotationExpiration] {
			return ""
		}
		note += noteCredentials
	}
	if _, ok := s.Data[secretdata.KeyDockerConfigJSON]; ok {
		note += noteRegistryLogin
	}
	return note
}

// parseCacheNote reads a cache note: the digest, and whether the data held credentials (whose
// expiry is the stamp's) or a registry login.
func parseCacheNote(note string) (digest string, credentials, registryLogin bool) {
	digest, _, _ = strings.Cut(note, "+") // a digest is hexadecimal
	return digest, strings.Contains(note, noteCredentials), strings.Contains(note, noteRegistryLogin)
}

// annotationLastApplied is where client-side kubectl apply (and tools built on it) keeps the
// whole object as last applied: often the largest part of an AssumedRole, and never read here.
const annotationLastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// compactAssumedRole is what the cache keeps of an AssumedRole: all but its managed fields and
// the last-applied annotation, sharing the strings AssumedRoles have in common. Nothing the
// operator writes is built from the cache's copy as a whole: status is patched from a diff, and
// the ClusterAssumedRole reconciler patches its AssumedRoles from a diff too, so the stripped
// parts are never written back.
func compactAssumedRole(obj any) (any, error) {
	ar, ok := obj.(*rkv1.AssumedRole)
	if !ok {
		return obj, nil
	}
	ar.ManagedFields = nil
	delete(ar.Annotations, annotationLastApplied)
	ar.APIVersion, ar.Kind = shared.of(ar.APIVersion), shared.of(ar.Kind)
	shareMeta(&ar.ObjectMeta)
	ar.Spec.Region = shared.of(ar.Spec.Region)
	if cap(ar.Status.Conditions) > len(ar.Status.Conditions) {
		// Decoding grows the slice by doubling: three conditions would hold room for four.
		ar.Status.Conditions = slices.Clone(ar.Status.Conditions)
	}
	for i := range ar.Status.Conditions {
		c := &ar.Status.Conditions[i]
		c.Type, c.Reason, c.Status = shared.of(c.Type), shared.of(c.Reason), metav1.ConditionStatus(shared.of(string(c.Status)))
	}
	return ar, nil
}

// shareMeta shares the namespace, the label and annotation keys, the finalizers and the owners'
// kinds of an object with the other cached objects.
func shareMeta(m *metav1.ObjectMeta) {
	m.Namespace = shared.of(m.Namespace)
	m.Labels = sharedKeys(m.Labels)
	m.Annotations = sharedKeys(m.Annotations)
	for i := range m.Finalizers {
		m.Finalizers[i] = shared.of(m.Finalizers[i])
	}
	for i := range m.OwnerReferences {
		o := &m.OwnerReferences[i]
		o.APIVersion, o.Kind = shared.of(o.APIVersion), shared.of(o.Kind)
	}
}

// sharedKeys is m with its keys shared: a new map, as a map's keys cannot be replaced in place.
func sharedKeys(m map[string]string) map[string]string {
	if len(m) == 0 {
		return m
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[shared.of(k)] = v
	}
	return out
}

// stringSet is a bounded set of strings that cached objects share instead of each holding its own
// copy. Tenants choose label and annotation keys freely, so the set is bounded in how many and
// how long strings it takes: past that, strings are left as they are.
type stringSet struct {
	mu  sync.RWMutex
	set map[string]string
}

const (
	// sharedMax is the most strings shared; sharedMaxLen the longest shared string. Shared
	// strings are never released: 4,096 of at most 256 bytes bound them to 1 MiB.
	sharedMax    = 4096
	sharedMaxLen = 256
)

var shared = &stringSet{set: map[string]string{}}

// of returns the shared copy of s, adding s when there is room.
func (p *stringSet) of(s string) string {
	if s == "" || len(s) > sharedMaxLen {
		return s
	}
	p.mu.RLock()
	v, ok := p.set[s]
	p.mu.RUnlock()
	if ok {
		return v
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if v, ok := p.set[s]; ok {
		return v
	}
	if len(p.set) >= sharedMax {
		return s
	}
	p.set[s] = s
	return s
}
