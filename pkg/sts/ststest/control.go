package ststest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// ControlHandler exposes the test controls over HTTP for an emulator run as a process. Mount it
// under /_ststest/ (as cmd ststest does); STS clients never call those paths.
//
//	POST /_ststest/fail?code=Throttling&status=400&n=3&message=...   fail the next n calls
//	                   (&action=GetAuthorizationToken: only calls of that action)
//	POST /_ststest/down?on=true|false                                drop connections
//	POST /_ststest/latency?d=2s                                      delay answers
//	POST /_ststest/role?arn=...   (body: RoleRule JSON)              set a role's trust rule
//	POST /_ststest/reset                                             forget calls and faults
//	POST /_ststest/ecr-deny?arn=...&on=true|false                    refuse ECR tokens to a role's sessions
//	POST /_ststest/oidc-provider   (body: OIDCProvider JSON)         register an OpenID Connect provider
//	POST /_ststest/trust-anchor    (body: TrustAnchor JSON)          set a Roles Anywhere trust anchor
//	POST /_ststest/profile         (body: RolesAnywhereProfile JSON) set a Roles Anywhere profile
//	POST /_ststest/revoke?serial=<hex>&on=true|false                 revoke a certificate by configuration
//	GET  /_ststest/calls                                             calls as JSON
//	GET  /_ststest/in-flight                                         requests being answered now
func (s *Server) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /_ststest/fail", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		n, _ := strconv.Atoi(q.Get("n"))
		status, _ := strconv.Atoi(q.Get("status"))
		if n < 1 {
			n = 1
		}
		if status == 0 {
			status = http.StatusBadRequest
		}
		if q.Get("code") == "" {
			http.Error(w, "code is required", http.StatusBadRequest)
			return
		}
		s.FailNextAction(q.Get("action"), n, q.Get("code"), status, q.Get("message"))
	})
	mux.HandleFunc("POST /_ststest/down", func(w http.ResponseWriter, r *http.Request) {
		s.SetDown(r.URL.Query().Get("on") == "true")
	})
	mux.HandleFunc("POST /_ststest/latency", func(w http.ResponseWriter, r *http.Request) {
		d, err := time.ParseDuration(r.URL.Query().Get("d"))
		if err != nil {
			http.Error(w, "d must be a duration such as 2s", http.StatusBadRequest)
			return
		}
		s.SetLatency(d)
	})
	mux.HandleFunc("POST /_ststest/role", func(w http.ResponseWriter, r *http.Request) {
		var rule RoleRule
		if err := json.NewDecoder(r.Body).Decode(&rule); err != nil || r.URL.Query().Get("arn") == "" {
			http.Error(w, "arn query parameter and a RoleRule JSON body are required", http.StatusBadRequest)
			return
		}
		s.SetRole(r.URL.Query().Get("arn"), rule)
	})
	mux.HandleFunc("POST /_ststest/oidc-provider", func(w http.ResponseWriter, r *http.Request) {
		var p OIDCProvider
		if err := decodeControl(r, &p); err != nil {
			http.Error(w, "an OIDCProvider JSON body is required: "+err.Error(), http.StatusBadRequest)
			return
		}
		if err := s.AddOIDCProvider(p); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})
	mux.HandleFunc("POST /_ststest/trust-anchor", func(w http.ResponseWriter, r *http.Request) {
		var a TrustAnchor
		if err := decodeControl(r, &a); err != nil {
			http.Error(w, "a TrustAnchor JSON body is required: "+err.Error(), http.StatusBadRequest)
			return
		}
		if err := s.AddTrustAnchor(a); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})
	mux.HandleFunc("POST /_ststest/profile", func(w http.ResponseWriter, r *http.Request) {
		var p RolesAnywhereProfile
		if err := decodeControl(r, &p); err != nil {
			http.Error(w, "a RolesAnywhereProfile JSON body is required: "+err.Error(), http.StatusBadRequest)
			return
		}
		s.AddRolesAnywhereProfile(p)
	})
	mux.HandleFunc("POST /_ststest/revoke", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("serial") == "" {
			http.Error(w, "serial is required", http.StatusBadRequest)
			return
		}
		s.RevokeCertificate(r.URL.Query().Get("serial"), r.URL.Query().Get("on") != "false")
	})
	mux.HandleFunc("POST /_ststest/ecr-deny", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("arn") == "" {
			http.Error(w, "arn is required", http.StatusBadRequest)
			return
		}
		s.SetECRDenied(r.URL.Query().Get("arn"), r.URL.Query().Get("on") == "true")
	})
	mux.HandleFunc("POST /_ststest/reset", func(w http.ResponseWriter, r *http.Request) {
		s.ResetCalls()
		s.ClearFaults()
		s.SetDown(false)
		s.SetLatency(0)
	})
	mux.HandleFunc("GET /_ststest/in-flight", func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprint(w, s.InFlight())
	})
	mux.HandleFunc("GET /_ststest/calls", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.Calls())
	})
	return mux
}

// decodeControl reads a control request's JSON body, bounded.
func decodeControl(r *http.Request, v any) error {
	return json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(v)
}
