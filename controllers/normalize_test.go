package controllers

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/renewal"
	"github.com/rolekeeper/rolekeeper/pkg/secretdata"
	"github.com/rolekeeper/rolekeeper/pkg/sts"
)

// The renewal time computed at issue equals the one every later reconcile computes from the
// Secret, whatever the sub-second part of the issue time; otherwise status is rewritten once
// after every issuance.
func TestIssueTimesRoundTripThroughTheSecret(t *testing.T) {
	ar := &rkv1.AssumedRole{ObjectMeta: metav1.ObjectMeta{UID: "0b1c2d3e"}}
	for ms := 0; ms < 1000; ms += 37 {
		issued := time.Date(2026, 11, 22, 12, 0, 0, ms*int(time.Millisecond), time.UTC)
		res := &sts.Result{IssuedAt: issued, Credentials: sts.Credentials{AccessKeyID: "ASIAX", SecretAccessKey: "s", SessionToken: "t", Expiration: issued.Add(time.Hour)}}
		normalize(res)
		atIssue := renewal.Time(res.IssuedAt, res.Credentials.Expiration, RenewalPolicy(ar), string(ar.UID))

		data := secretdata.Render(secretdata.Input{AccessKeyID: "ASIAX", SecretAccessKey: "s", SessionToken: "t", Expiration: res.Credentials.Expiration})
		back, ok := secretdata.Credentials(data)
		issuedBack, err := time.Parse(time.RFC3339, rfc3339(res.IssuedAt))
		if !ok || err != nil {
			t.Fatal("round trip failed")
		}
		if later := renewal.Time(issuedBack, back.Expiration, RenewalPolicy(ar), string(ar.UID)); !later.Equal(atIssue) {
			t.Fatalf("issued at +%d ms: renewal %v at issue, %v from the Secret", ms, atIssue, later)
		}
	}
}
