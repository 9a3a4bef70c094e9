package controllers

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

type countingMapper struct {
	meta.RESTMapper
	calls int
}

func (c *countingMapper) RESTMapping(gk schema.GroupKind, versions ...string) (*meta.RESTMapping, error) {
	c.calls++
	return c.RESTMapper.RESTMapping(gk, versions...)
}

// A mapping is looked up once and then answered from memory, each caller with its own copy; a
// kind not found is asked again, and the memory is bounded.
func TestRememberingMapper(t *testing.T) {
	secrets := schema.GroupVersionKind{Version: "v1", Kind: "Secret"}
	base := meta.NewDefaultRESTMapper(nil)
	base.Add(secrets, meta.RESTScopeNamespace)
	under := &countingMapper{RESTMapper: base}
	m := &rememberingMapper{RESTMapper: under, known: map[string]*meta.RESTMapping{}}
	for range 3 {
		got, err := m.RESTMapping(secrets.GroupKind(), "v1")
		if err != nil || got.Scope.Name() != meta.RESTScopeNameNamespace || got.Resource.Resource != "secrets" {
			t.Fatalf("mapping %+v, %v", got, err)
		}
		got.Resource.Resource = "changed by a caller"
	}
	if under.calls != 1 {
		t.Errorf("%d lookups for one kind, want 1", under.calls)
	}
	missing := schema.GroupKind{Group: "example.com", Kind: "Widget"}
	for range 2 {
		if _, err := m.RESTMapping(missing); err == nil {
			t.Fatal("an unknown kind was mapped")
		}
	}
	if under.calls != 3 {
		t.Errorf("an unknown kind was looked up %d times in two asks, want 2", under.calls-1)
	}
	for i := range 2 * rememberedMappings {
		gvk := schema.GroupVersionKind{Group: "example.com", Version: "v1", Kind: "Kind" + string(rune('A'+i%26)) + string(rune('a'+i/26))}
		base.Add(gvk, meta.RESTScopeRoot)
		if _, err := m.RESTMapping(gvk.GroupKind(), "v1"); err != nil {
			t.Fatal(err)
		}
	}
	if len(m.known) > rememberedMappings {
		t.Errorf("%d mappings remembered, want at most %d", len(m.known), rememberedMappings)
	}
}
