package ststest

import (
	"encoding/json"
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
//	GET  /_ststest/calls                                             calls as JSON
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
	mux.HandleFunc("GET /_ststest/calls", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.Calls())
	})
	return mux
}
