package renewal_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/rolekeeper/rolekeeper/pkg/renewal"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func TestTime(t *testing.T) {
	hour := time.Hour
	cases := []struct {
		name       string
		issued     time.Time
		lifetime   time.Duration
		policy     renewal.Policy
		seed       string
		earliest   time.Duration // bounds relative to issued
		latest     time.Duration
		exactly    time.Duration // when non-zero, the exact answer
		exactlySet bool
	}{
		{name: "default is two thirds less up to 5% jitter", issued: t0, lifetime: hour, seed: "uid-a", earliest: 40*time.Minute - 3*time.Minute, latest: 40 * time.Minute},
		{name: "no jitter seed gives the same bounds", issued: t0, lifetime: hour, seed: "", earliest: 37 * time.Minute, latest: 40 * time.Minute},
		{name: "renewBefore 20m", issued: t0, lifetime: hour, policy: renewal.Policy{RenewBefore: 20 * time.Minute}, seed: "uid-a", earliest: 37 * time.Minute, latest: 40 * time.Minute},
		{name: "renewBefore 50m", issued: t0, lifetime: hour, policy: renewal.Policy{RenewBefore: 50 * time.Minute}, seed: "uid-b", earliest: 7 * time.Minute, latest: 10 * time.Minute},
		{name: "renewBefore equal to lifetime falls back to default", issued: t0, lifetime: hour, policy: renewal.Policy{RenewBefore: hour}, seed: "uid-a", earliest: 37 * time.Minute, latest: 40 * time.Minute},
		{name: "renewBefore longer than lifetime falls back to default", issued: t0, lifetime: 15 * time.Minute, policy: renewal.Policy{RenewBefore: 12 * hour}, seed: "uid-a", earliest: 10*time.Minute - 45*time.Second, latest: 10 * time.Minute},
		{name: "percentage 10 of 12h", issued: t0, lifetime: 12 * hour, policy: renewal.Policy{RenewBeforePercentage: 10}, seed: "uid-c", earliest: 648*time.Minute - 36*time.Minute, latest: 648 * time.Minute},
		{name: "percentage 90", issued: t0, lifetime: hour, policy: renewal.Policy{RenewBeforePercentage: 90}, seed: "uid-c", earliest: 3 * time.Minute, latest: 6 * time.Minute},
		{name: "renewBefore 1m stays at least 60s before expiry", issued: t0, lifetime: hour, policy: renewal.Policy{RenewBefore: time.Minute}, seed: "uid-a", earliest: 56 * time.Minute, latest: 59 * time.Minute},
		{name: "percentage 1 of 15m clamps to 60s before expiry", issued: t0, lifetime: 15 * time.Minute, policy: renewal.Policy{RenewBeforePercentage: 1}, seed: "uid-a", earliest: 14*time.Minute - 45*time.Second, latest: 14 * time.Minute},
		{name: "AssumeRoot 900s", issued: t0, lifetime: 900 * time.Second, seed: "uid-d", earliest: 600*time.Second - 45*time.Second, latest: 600 * time.Second},
		{name: "time-scaled 15s session renews before expiry", issued: t0, lifetime: 15 * time.Second, seed: "uid-e", earliest: 9 * time.Second, latest: 11 * time.Second},
		{name: "already expired renews at issue time", issued: t0, lifetime: -time.Minute, seed: "uid-a", exactly: 0, exactlySet: true},
		{name: "zero lifetime renews at issue time", issued: t0, lifetime: 0, seed: "uid-a", exactly: 0, exactlySet: true},
		{name: "sub-second issue time truncates", issued: t0.Add(700 * time.Millisecond), lifetime: hour, seed: "uid-a", earliest: 37 * time.Minute, latest: 40 * time.Minute},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			expiration := c.issued.Add(c.lifetime)
			got := renewal.Time(c.issued, expiration, c.policy, c.seed)
			if got.Nanosecond() != 0 {
				t.Errorf("%v is not whole seconds", got)
			}
			if c.exactlySet {
				if want := c.issued.Truncate(time.Second).Add(c.exactly); !got.Equal(want) {
					t.Errorf("got %v, want %v", got, want)
				}
				return
			}
			base := c.issued.Truncate(time.Second)
			if got.Before(base.Add(c.earliest)) || got.After(c.issued.Add(c.latest)) {
				t.Errorf("got issued+%v, want between +%v and +%v", got.Sub(c.issued), c.earliest, c.latest)
			}
			if c.lifetime > 0 && !got.Before(expiration) {
				t.Errorf("renews at %v, not before expiry %v", got, expiration)
			}
			if c.lifetime >= 4*time.Minute && got.After(expiration.Add(-60*time.Second)) {
				t.Errorf("renews less than 60 s before expiry: %v", expiration.Sub(got))
			}
		})
	}
}

func TestTimeIsDeterministicPerSeedAndSpreads(t *testing.T) {
	exp := t0.Add(time.Hour)
	a := renewal.Time(t0, exp, renewal.Policy{}, "uid-1")
	if b := renewal.Time(t0, exp, renewal.Policy{}, "uid-1"); !a.Equal(b) {
		t.Fatalf("same seed gave %v and %v", a, b)
	}
	// 1,000 objects issued in the same second renew across the jitter window: no one-second
	// bucket holds more than 2% of them.
	buckets := map[int64]int{}
	for i := range 1000 {
		buckets[renewal.Time(t0, exp, renewal.Policy{}, fmt.Sprintf("uid-%d", i)).Unix()]++
	}
	peak := 0
	for _, n := range buckets {
		peak = max(peak, n)
	}
	if peak > 20 || len(buckets) < 150 {
		t.Errorf("1,000 renewals fell into %d seconds, the fullest holding %d", len(buckets), peak)
	}
}

// A clock skew of a few seconds between issue and now does not move the renewal time: it is a
// function of the times STS returned and the client stamped, not of when it is computed.
func TestTimeDependsOnlyOnIssueAndExpiry(t *testing.T) {
	exp := t0.Add(time.Hour)
	a := renewal.Time(t0, exp, renewal.Policy{}, "uid")
	b := renewal.Time(t0.Add(3*time.Second), exp, renewal.Policy{}, "uid")
	if d := a.Sub(b); d > 3*time.Second || d < -3*time.Second {
		t.Errorf("3 s of skew at issue moved renewal by %v", d)
	}
}

func TestBackoff(t *testing.T) {
	prev := time.Duration(0)
	for attempt := int32(1); attempt <= 12; attempt++ {
		d := renewal.Backoff(attempt, true, "uid")
		base := renewal.RetryBase << (attempt - 1)
		if base > renewal.RetryMax {
			base = renewal.RetryMax
		}
		if d < base || d > min(base*12/10, renewal.RetryMax) {
			t.Errorf("attempt %d: %v, want %v to +20%% (max %v)", attempt, d, base, renewal.RetryMax)
		}
		if d < prev && d != renewal.RetryMax {
			t.Errorf("attempt %d: %v shorter than the previous %v", attempt, d, prev)
		}
		prev = d
	}
	if d := renewal.Backoff(0, true, "uid"); d < renewal.RetryBase || d > 6*time.Second {
		t.Errorf("attempt 0: %v", d)
	}
	if d := renewal.Backoff(3, false, "uid"); d != renewal.SlowRetry {
		t.Errorf("terminal: %v, want %v", d, renewal.SlowRetry)
	}
	if renewal.Backoff(2, true, "a") == renewal.Backoff(2, true, "b") && renewal.Backoff(2, true, "c") == renewal.Backoff(2, true, "d") {
		t.Error("jitter does not depend on the seed")
	}
}

func BenchmarkTime(b *testing.B) {
	exp := t0.Add(time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		_ = renewal.Time(t0, exp, renewal.Policy{RenewBeforePercentage: 30}, "0b1c2d3e-uid")
	}
}
