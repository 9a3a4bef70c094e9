package credserver

import "time"

// The Expiration served to SDKs is not the real expiry of the credentials. SDKs refresh when the
// Expiration they were given comes within their own window: aws-sdk-go-v2 and the JavaScript
// SDK v3 five minutes ahead, botocore (boto3, the AWS CLI) fifteen minutes ahead (advisory) and
// ten (mandatory), some SDKs only at the second itself. One served value has to work for all.
const (
	// Horizon bounds how far ahead the served Expiration lies. It is longer than the widest
	// SDK window (botocore's fifteen minutes), so no SDK re-asks on every call while the
	// credentials are fresh, and short enough that a rotation reaches every SDK within
	// Horizon of arriving in the pod, whatever the session's lifetime.
	Horizon = 20 * time.Minute
	// Margin is kept between the served Expiration and the real one, so that an SDK that
	// uses credentials up to the served second still reaches AWS before they expire.
	Margin = 2 * time.Minute
	// Floor is the shortest Expiration served while the credentials are valid for longer, so
	// that an SDK is never handed credentials it already considers expired.
	Floor = time.Minute
)

// ServedExpiration returns the Expiration to serve at now for credentials that really expire at
// exp, and false when they must not be served because they have expired:
//
//	served = max(min(now + Horizon, exp − Margin), min(now + Floor, exp))
//
// While more than Horizon + Margin remain, every SDK re-asks Horizon minus its own window after
// each answer. Closer to the real expiry the served value stays at exp − Margin, so every SDK
// asks again at exp − Margin − its window at the latest: after the operator's rotation (at two
// thirds of the lifetime by default) and well before the real expiry. In the last Margin +
// Floor the credentials are still served, with an Expiration at most Floor ahead, so SDKs keep
// asking until the rotated ones arrive.
func ServedExpiration(now, exp time.Time) (time.Time, bool) {
	if !now.Before(exp) {
		return time.Time{}, false
	}
	served := earliest(now.Add(Horizon), exp.Add(-Margin))
	if floor := earliest(now.Add(Floor), exp); served.Before(floor) {
		served = floor
	}
	return served.UTC().Truncate(time.Second), true
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
