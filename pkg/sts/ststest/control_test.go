package ststest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The in-flight count covers a request held by the latency control, and only while it is held.
func TestInFlightCountsHeldRequests(t *testing.T) {
	s := New(Options{}).Start()
	defer s.Close()
	control := httptest.NewServer(s.ControlHandler())
	defer control.Close()
	s.SetLatency(time.Second)

	answered := make(chan struct{})
	go func() {
		defer close(answered)
		if resp, err := http.Post(s.URL, "application/x-www-form-urlencoded", strings.NewReader("Action=GetCallerIdentity&Version=2011-06-15")); err == nil {
			_ = resp.Body.Close()
		}
	}()
	inFlight := func() string {
		resp, err := http.Get(control.URL + "/_ststest/in-flight")
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	for deadline := time.Now().Add(10 * time.Second); inFlight() != "1"; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("in-flight %s with one request held", inFlight())
		}
	}
	<-answered
	if n := s.InFlight(); n != 0 {
		t.Errorf("in-flight %d after the held request ended", n)
	}
}
