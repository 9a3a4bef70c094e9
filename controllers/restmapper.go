package controllers

import (
	"net/http"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

// NewRESTMapper is the manager's REST mapper: controller-runtime's, with the mappings it found
// remembered. A cache that watches a list of namespaces asks the mapper whether a kind is
// namespaced on every read and list, and the mapper answers by searching all the kinds it knows
// with fresh allocations each time: about a tenth of the operator's CPU when it issues
// thousands of credentials at once. The kinds the operator reads are few and fixed (its own
// and a handful of built-in ones), and a kind's mapping does not change while it is served: a
// custom resource's scope and plural cannot be changed in place.
func NewRESTMapper(cfg *rest.Config, httpClient *http.Client) (meta.RESTMapper, error) {
	m, err := apiutil.NewDynamicRESTMapper(cfg, httpClient)
	if err != nil {
		return nil, err
	}
	return &rememberingMapper{RESTMapper: m, known: map[string]*meta.RESTMapping{}}, nil
}

// rememberingMapper remembers the mappings found by RESTMapping, for at most rememberedMappings
// kinds (past that it asks each time: the bound is for kinds the operator never reads). Failures
// are not remembered, so a kind installed later is found as the underlying mapper finds it.
type rememberingMapper struct {
	meta.RESTMapper
	mu    sync.RWMutex
	known map[string]*meta.RESTMapping
}

const rememberedMappings = 64

func (m *rememberingMapper) RESTMapping(gk schema.GroupKind, versions ...string) (*meta.RESTMapping, error) {
	key := gk.String() + "/" + strings.Join(versions, ",")
	m.mu.RLock()
	known, ok := m.known[key]
	m.mu.RUnlock()
	if ok {
		copied := *known // callers get their own copy, as from the underlying mapper
		return &copied, nil
	}
	mapping, err := m.RESTMapper.RESTMapping(gk, versions...)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	if len(m.known) < rememberedMappings {
		kept := *mapping
		m.known[key] = &kept
	}
	m.mu.Unlock()
	return mapping, nil
}
