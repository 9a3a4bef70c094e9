package credserver

import (
	"fmt"
	"testing"
	"time"

	"github.com/rolekeeper/rolekeeper/pkg/renewal"
)

// sdkModel is an SDK's refresh rule as TestSDKRefreshWindows measures it on the real SDKs: it
// asks the endpoint again once the Expiration it holds is less than window ahead.
type sdkModel struct {
	name   string
	window time.Duration
}

var sdkModels = []sdkModel{
	{"exact second", 0},
	{"aws-sdk-go-v2, JS v3", 5 * time.Minute},
	{"botocore, AWS CLI", 15 * time.Minute},
}

// TestServedExpirationOverSessions simulates a pod through many rotations: the operator renews
// at pkg/renewal's time, the kubelet shows the new Secret `delay` later, and each SDK model
// calls AWS every 10 s, asking the sidecar when its rule says so. For every lifetime and SDK:
// no call is signed within Margin of the real expiry, every rotation reaches the SDK before the
// old credentials' last Margin, and once a session has more than Horizon + Margin left the SDK
// asks at most once per Horizon − window. It logs the figures docs/credentials-sidecar.md gives.
func TestServedExpirationOverSessions(t *testing.T) {
	const call = 10 * time.Second
	for _, lifetime := range []time.Duration{15 * time.Minute, time.Hour, 4 * time.Hour, 12 * time.Hour} {
		for _, delay := range []time.Duration{0, 2 * time.Minute} {
			for _, m := range sdkModels {
				t.Run(fmt.Sprintf("%v session, kubelet %v, %s", lifetime, delay, m.name), func(t *testing.T) {
					type session struct{ issued, exp, visible time.Time }
					start := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
					sessions := []session{{start, start.Add(lifetime), start}}
					next := func(s session, n int) session {
						at := renewal.Time(s.issued, s.exp, renewal.Policy{}, fmt.Sprint("uid-", n))
						return session{at, at.Add(lifetime), at.Add(delay)}
					}
					for len(sessions) < 6 {
						sessions = append(sessions, next(sessions[len(sessions)-1], len(sessions)))
					}
					current := func(now time.Time) int { // the newest session the pod sees
						i := 0
						for j, s := range sessions {
							if !s.visible.After(now) {
								i = j
							}
						}
						return i
					}
					held, heldExp := -1, time.Time{}
					var fetches, steadyFetches int
					var steady time.Duration
					end := sessions[4].issued
					for now := start; now.Before(end); now = now.Add(call) {
						if held < 0 || !now.Before(heldExp.Add(-m.window)) {
							i := current(now)
							served, ok := ServedExpiration(now, sessions[i].exp)
							if !ok {
								t.Fatalf("%v: the pod's newest credentials expired", now.Sub(start))
							}
							if held >= 0 && i == held && sessions[i].exp.Sub(now) > Horizon+Margin {
								steadyFetches++
							}
							held, heldExp = i, served
							fetches++
						}
						if left := sessions[held].exp.Sub(now); left < Margin {
							t.Fatalf("%v: signed with credentials %v from their real expiry (rotation visible at %v)", now.Sub(start), left, sessions[held+1].visible.Sub(start))
						}
						if sessions[held].exp.Sub(now) > Horizon+Margin {
							steady += call
						}
					}
					if steady == 0 { // a session never has Horizon + Margin left
						t.Logf("%d requests in %v (%.0f/h)", fetches, end.Sub(start), float64(fetches)/end.Sub(start).Hours())
						return
					}
					perHour := float64(steadyFetches+1) / steady.Hours()
					limit := 1 / (Horizon - m.window).Hours()
					t.Logf("%d requests in %v; steady state %.1f/h (at most %.1f/h)", fetches, end.Sub(start), perHour, limit+1/steady.Hours())
					if perHour > limit*1.05+1/steady.Hours() {
						t.Errorf("steady state %.2f requests/h, want at most %.2f", perHour, limit)
					}
				})
			}
		}
	}
}
