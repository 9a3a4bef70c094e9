// Package renewal decides when credentials are re-issued and how long to wait after a failure.
// Everything here is a pure function of plain values: no clock is read, no Kubernetes imported.
package renewal

import (
	"hash/fnv"
	"strconv"
	"time"
)

// Policy is the user's renewal setting. At most one field is set; neither means the default.
type Policy struct {
	// RenewBefore renews this long before expiry. Ignored when not shorter than the lifetime.
	RenewBefore time.Duration
	// RenewBeforePercentage renews when this percentage (1-90) of the lifetime remains.
	RenewBeforePercentage int32
}

const (
	// MaxJitterFraction is the largest share of the lifetime taken off the renewal time, so that
	// credentials issued together do not renew together.
	MaxJitterFraction = 0.05
	// ExpiryMargin is how long before expiry renewal happens at the latest.
	ExpiryMargin = 60 * time.Second

	// RetryBase is the first backoff after a retryable failure; it doubles with each attempt.
	RetryBase = 5 * time.Second
	// RetryMax caps the backoff after retryable failures.
	RetryMax = 5 * time.Minute
	// SlowRetry is the wait after a terminal failure, in case the cause was fixed outside the
	// cluster (a trust policy, an SCP).
	SlowRetry = 10 * time.Minute
)

// Time returns when credentials issued at issued and expiring at expiration should be re-issued.
//
// The lifetime is the real one (expiration − issued), not the one requested. The base point is
// two thirds of it, or expiration − RenewBefore, or expiration − RenewBeforePercentage of it.
// From that a deterministic jitter of up to 5% of the lifetime, seeded by seed (the object's
// UID), is taken off. The result is never later than 60 s before expiry (a quarter of the
// lifetime when that is shorter, for the very short sessions of time-scaled tests), never
// earlier than issued, and truncated to whole seconds.
func Time(issued, expiration time.Time, p Policy, seed string) time.Time {
	lifetime := expiration.Sub(issued)
	if lifetime <= 0 {
		return issued.Truncate(time.Second)
	}
	at := issued.Add(lifetime * 2 / 3)
	switch {
	case p.RenewBefore > 0 && p.RenewBefore < lifetime:
		at = expiration.Add(-p.RenewBefore)
	case p.RenewBeforePercentage > 0 && p.RenewBeforePercentage < 100:
		at = expiration.Add(-lifetime * time.Duration(p.RenewBeforePercentage) / 100)
	}
	at = at.Add(-time.Duration(float64(lifetime) * MaxJitterFraction * fraction(seed)))
	if latest := LastUsable(issued, expiration); at.After(latest) {
		at = latest
	}
	if at.Before(issued) {
		at = issued
	}
	return at.Truncate(time.Second)
}

// Backoff is how long to wait before retrying after the given number of consecutive failures
// (1 for the first). Retryable failures wait 5 s doubling up to 5 min, with a deterministic
// jitter of up to +20% seeded by seed and attempt, capped at 5 min; terminal failures wait
// SlowRetry.
func Backoff(attempt int32, retryable bool, seed string) time.Duration {
	if !retryable {
		return SlowRetry
	}
	if attempt < 1 {
		attempt = 1
	}
	d := RetryBase
	for i := int32(1); i < attempt && d < RetryMax; i++ {
		d *= 2
	}
	d += time.Duration(float64(d) * 0.2 * fraction(seed+"/"+strconv.Itoa(int(attempt))))
	return min(d, RetryMax).Truncate(time.Millisecond)
}

// fraction maps seed to [0, 1) deterministically. FNV alone leaves the high bits of similar
// seeds (UIDs differing in a few characters) close together, so its output is run through the
// splitmix64 finalizer to spread them evenly.
func fraction(seed string) float64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(seed))
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11) / float64(1<<53)
}

// LastUsable is the last moment credentials issued at issued and expiring at expiration are used
// to sign: the latest renewal time, ExpiryMargin before expiry (a quarter of the lifetime when
// that is shorter). A call signed later could reach AWS after they expired.
func LastUsable(issued, expiration time.Time) time.Time {
	return expiration.Add(-min(ExpiryMargin, expiration.Sub(issued)/4))
}
