package controllers_test

import (
	"context"
	"net/http"
	"path"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/controllers"
	"github.com/rolekeeper/rolekeeper/pkg/secretdata"
	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
)

// TestCacheHoldsOnlyWhatTheOperatorReads: the manager's cache holds AssumedRoles and the Secrets
// labelled as the operator's, without their managed fields (which the API server keeps and
// returns), and of those Secrets no credential value: the keys, the expiry and a digest of the
// data; other Secrets in the namespace are not cached.
func TestCacheHoldsOnlyWhatTheOperatorReads(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ststest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lastApplied := map[string]string{"kubectl.kubernetes.io/last-applied-configuration": `{"apiVersion":"rolekeeper.io/v1alpha1","kind":"AssumedRole"}`, "team": "payments"}
	ar := &rkv1.AssumedRole{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: h.ns, Annotations: lastApplied}, Spec: roleSpec("arn:aws:iam::111122223333:role/app", 900)}
	ar2 := &rkv1.AssumedRole{ObjectMeta: metav1.ObjectMeta{Name: "app2", Namespace: h.ns, Annotations: lastApplied}, Spec: roleSpec("arn:aws:iam::111122223333:role/app", 900)}
	data := map[string][]byte{"AWS_ACCESS_KEY_ID": []byte("ASIAEXAMPLE000000001"), "AWS_SECRET_ACCESS_KEY": []byte("wJalrXUtnFEMIEXAMPLE"), "AWS_SESSION_TOKEN": []byte("IQoJb3JpZ2luX2VjEXAMPLE"), "AWS_CREDENTIAL_EXPIRATION": []byte("2026-12-01T13:00:00Z")}
	owned := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: h.ns, Labels: map[string]string{rkv1.LabelAssumedRole: "app"}, Annotations: map[string]string{rkv1.AnnotationExpiration: "2026-12-01T13:00:00Z"}}, Data: data}
	owned2 := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "app2", Namespace: h.ns, Labels: map[string]string{rkv1.LabelAssumedRole: "app2"}}, Data: data}
	other := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: h.ns}}
	for _, o := range []client.Object{ar, ar2, owned, owned2, other} {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		if len(o.GetManagedFields()) == 0 {
			t.Fatalf("the API server returned %s without managed fields; the test proves nothing", o.GetName())
		}
	}
	c, err := cache.New(cfg, withScheme(controllers.CacheOptions([]string{h.ns})))
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		t.Fatal("cache did not sync")
	}
	for _, o := range []client.Object{&rkv1.AssumedRole{}, &corev1.Secret{}} {
		name := client.ObjectKey{Namespace: h.ns, Name: "app"}
		if err := c.Get(ctx, name, o); err != nil {
			t.Fatalf("cached %T: %v", o, err)
		}
		if mf := o.GetManagedFields(); len(mf) != 0 {
			t.Errorf("cached %T holds %d managed fields entries, want none", o, len(mf))
		}
	}
	cached := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(owned), cached); err != nil {
		t.Fatal(err)
	}
	if cached.Data != nil {
		t.Errorf("cached Secret data %q: want none, the cache note stands for it", cached.Data)
	}
	if got, want := cached.Annotations["rolekeeper.io/cached data"], secretdata.DataDigest(data)+"+credentials"; got != want {
		t.Errorf("cache note %q, want the digest of the data and that it holds credentials, %q", got, want)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(other), &corev1.Secret{}); err == nil {
		t.Errorf("an unlabelled Secret is in the cache")
	}
	// The note's key marks the cache's copy because no Secret can carry it.
	forged := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "forged", Namespace: h.ns, Annotations: map[string]string{"rolekeeper.io/cached data": "x"}}}
	if err := k8s.Create(ctx, forged); err == nil {
		t.Error("the API server stored a Secret with the cache note's annotation key")
	}

	// AssumedRoles lose the last-applied copy of themselves, nothing else; what cached objects
	// have in common they hold once.
	cachedAR, cachedAR2 := &rkv1.AssumedRole{}, &rkv1.AssumedRole{}
	cached2 := &corev1.Secret{}
	for o, key := range map[client.Object]client.Object{cachedAR: ar, cachedAR2: ar2, cached2: owned2} {
		if err := c.Get(ctx, client.ObjectKeyFromObject(key), o); err != nil {
			t.Fatal(err)
		}
	}
	if _, kept := cachedAR.Annotations["kubectl.kubernetes.io/last-applied-configuration"]; kept || cachedAR.Annotations["team"] != "payments" || cachedAR.Spec.AssumeRole.RoleArn != ar.Spec.AssumeRole.RoleArn {
		t.Errorf("cached AssumedRole annotations %v, spec %+v", cachedAR.Annotations, cachedAR.Spec.AssumeRole)
	}
	same := func(what, a, b string) {
		if a != b || unsafe.StringData(a) != unsafe.StringData(b) {
			t.Errorf("%s: %q and %q are held twice", what, a, b)
		}
	}
	same("the namespace of two Secrets", cached.Namespace, cached2.Namespace)
	same("the namespace of a Secret and an AssumedRole", cached.Namespace, cachedAR.Namespace)
	same("the label key of two Secrets", labelKey(cached), labelKey(cached2))
	for k := range cachedAR.Annotations {
		for k2 := range cachedAR2.Annotations {
			if k == k2 {
				same("an annotation key", k, k2)
			}
		}
	}
}

// labelKey is the key of o's only label.
func labelKey(o client.Object) string {
	for k := range o.GetLabels() {
		return k
	}
	return ""
}

func withScheme(o cache.Options) cache.Options {
	o.Scheme = scheme
	return o
}

// TestCacheDecodesItsOwnKindsWatches: with the operator's transport on its REST config, the
// cache's watch of AssumedRoles is decoded by package watchdecode (client-go receives an empty
// body in place of each 200 response), the watch of Secrets (protobuf) by client-go, and the cache holds what the
// API server has either way, including a change made after the watch began.
func TestCacheDecodesItsOwnKindsWatches(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ststest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var taken, passed sync.Map // watched resource → true
	opCfg := rest.CopyConfig(cfg)
	opCfg.Wrap(controllers.WatchTransport)
	opCfg.Wrap(func(next http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
			resp, err := next.RoundTrip(req)
			// A watch can be refused at first (429 while the API server's watch cache starts):
			// client-go gets every response but a 200 as it is.
			if err == nil && resp.StatusCode == http.StatusOK && req.URL.Query().Get("watch") == "true" && strings.Contains(req.URL.Path, "/namespaces/"+h.ns+"/") {
				resource := path.Base(req.URL.Path)
				if resp.Body == http.NoBody {
					taken.Store(resource, true)
				} else {
					passed.Store(resource, true)
				}
			}
			return resp, err
		})
	})
	c, err := cache.New(opCfg, withScheme(controllers.CacheOptions([]string{h.ns})))
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.Start(ctx) }()
	for _, o := range []client.Object{&rkv1.AssumedRole{}, &corev1.Secret{}} {
		if _, err := c.GetInformer(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	if !c.WaitForCacheSync(ctx) {
		t.Fatal("cache did not sync")
	}
	ar := &rkv1.AssumedRole{ObjectMeta: metav1.ObjectMeta{Name: "watched", Namespace: h.ns}, Spec: roleSpec("arn:aws:iam::111122223333:role/app", 900)}
	if err := k8s.Create(ctx, ar); err != nil {
		t.Fatal(err)
	}
	cached := &rkv1.AssumedRole{}
	for c.Get(ctx, client.ObjectKeyFromObject(ar), cached) != nil || cached.ResourceVersion != ar.ResourceVersion {
		select {
		case <-ctx.Done():
			t.Fatalf("the cache never showed AssumedRole %s at version %s", ar.Name, ar.ResourceVersion)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if cached.Spec.AssumeRole == nil || cached.Spec.AssumeRole.RoleArn != ar.Spec.AssumeRole.RoleArn || cached.UID != ar.UID {
		t.Errorf("cached AssumedRole %+v, created %+v", cached, ar)
	}
	if _, ok := taken.Load("assumedroles"); !ok {
		t.Error("the AssumedRole watch was not decoded by watchdecode")
	}
	if _, ok := passed.Load("assumedroles"); ok {
		t.Error("a 200 response to an AssumedRole watch went to client-go")
	}
	if _, ok := passed.Load("secrets"); !ok {
		t.Error("the Secret watch did not reach client-go")
	}
	if _, ok := taken.Load("secrets"); ok {
		t.Error("a 200 response to a Secret watch was taken from client-go")
	}
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }
