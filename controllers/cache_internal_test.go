package controllers

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/secretdata"
)

// The shared strings are bounded: no string longer than sharedMaxLen and no more than
// sharedMax strings are taken, and past the bound strings come back as they are.
func TestSharedStringsAreBounded(t *testing.T) {
	p := &stringSet{set: map[string]string{}}
	a := strings.Clone("rolekeeper.io/issued-at")
	b := strings.Clone("rolekeeper.io/issued-at")
	if got := p.of(b); unsafe.StringData(p.of(a)) != unsafe.StringData(got) {
		t.Error("two equal strings are not shared")
	}
	long := strings.Repeat("k", sharedMaxLen+1)
	if p.of(long); len(p.set) != 1 {
		t.Errorf("a string of %d bytes was taken", len(long))
	}
	for i := range 2 * sharedMax {
		p.of(fmt.Sprintf("tenant-key-%d", i))
	}
	if len(p.set) != sharedMax {
		t.Errorf("%d strings shared, want at most %d", len(p.set), sharedMax)
	}
	late := fmt.Sprintf("tenant-key-%d", 3*sharedMax)
	if got := p.of(late); got != late {
		t.Errorf("past the bound %q came back as %q", late, got)
	}
}

// The cache note vouches for credentials only when they are all there and expire when the stamp
// says; data that says otherwise gets a note that vouches for nothing, and the note survives the
// transform seeing its own copy again.
func TestCacheNote(t *testing.T) {
	const exp = "2026-12-01T13:00:00Z"
	creds := func() map[string][]byte {
		return map[string][]byte{
			secretdata.KeyAccessKeyID: []byte("ASIAEXAMPLE"), secretdata.KeySecretAccessKey: []byte("secret"),
			secretdata.KeySessionToken: []byte("token"), secretdata.KeyCredentialExpiration: []byte(exp),
		}
	}
	for _, tc := range []struct {
		name       string
		data       map[string][]byte
		expiration string
		digest     bool
		creds      bool
		login      bool
	}{
		{name: "credentials", data: creds(), expiration: exp, digest: true, creds: true},
		{name: "expiry other than the stamp's", data: creds(), expiration: "2026-12-01T14:00:00Z"},
		{name: "no stamp", data: creds()},
		{name: "a key missing", data: func() map[string][]byte { d := creds(); delete(d, secretdata.KeySessionToken); return d }(), expiration: exp, digest: true},
		{name: "registry login", data: map[string][]byte{secretdata.KeyDockerConfigJSON: []byte(`{"auths":{}}`)}, expiration: exp, digest: true, login: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{}}, Data: tc.data}
			if tc.expiration != "" {
				s.Annotations[rkv1.AnnotationExpiration] = tc.expiration
			}
			want := secretdata.DataDigest(tc.data)
			s.Annotations[rkv1.AnnotationDataDigest] = want
			obj, err := compactSecret(s)
			if err != nil {
				t.Fatal(err)
			}
			obj, _ = compactSecret(obj) // the informer handing its copy back
			c := obj.(*corev1.Secret)
			if c.Data != nil {
				t.Errorf("cached data %v", c.Data)
			}
			digest, gotCreds, gotLogin := parseCacheNote(c.Annotations[annotationCachedNote])
			if (digest == want) != tc.digest || gotCreds != tc.creds || gotLogin != tc.login {
				t.Errorf("note %q: digest %v credentials %v login %v, want %v %v %v", c.Annotations[annotationCachedNote], digest == want, gotCreds, gotLogin, tc.digest, tc.creds, tc.login)
			}
			if vouched(c) != tc.digest {
				t.Errorf("vouched %v, want %v", vouched(c), tc.digest)
			}
		})
	}
}

// Decoding leaves a slice of three conditions room for four (384 bytes where 288 hold them):
// the cache keeps them without the spare room.
func TestCompactAssumedRoleHoldsConditionsExactly(t *testing.T) {
	ar := &rkv1.AssumedRole{TypeMeta: metav1.TypeMeta{APIVersion: rkv1.GroupVersion.String(), Kind: "AssumedRole"}}
	for _, typ := range []string{rkv1.ConditionReady, "Issuing", "Stalled"} {
		ar.Status.Conditions = append(ar.Status.Conditions, metav1.Condition{Type: typ, Status: metav1.ConditionTrue, Reason: "Test"})
	}
	b, err := json.Marshal(ar)
	if err != nil {
		t.Fatal(err)
	}
	decoded := &rkv1.AssumedRole{}
	if err := json.Unmarshal(b, decoded); err != nil {
		t.Fatal(err)
	}
	if cap(decoded.Status.Conditions) == len(decoded.Status.Conditions) {
		t.Fatal("decoding left no spare room: the test proves nothing")
	}
	roomy := unsafe.SliceData(decoded.Status.Conditions)
	obj, err := compactAssumedRole(decoded)
	if err != nil {
		t.Fatal(err)
	}
	c := obj.(*rkv1.AssumedRole).Status.Conditions
	if len(c) != 3 || cap(c) != 3 || c[0].Type != rkv1.ConditionReady {
		t.Errorf("cached conditions: len %d cap %d %+v", len(c), cap(c), c)
	}
	if unsafe.SliceData(c) == roomy {
		t.Error("the cached conditions are still in the decoded array with its spare room")
	}
}
