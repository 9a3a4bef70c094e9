package secretdata

import (
	"strconv"
	"time"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/renewal"
)

// Stamp is what the operator records about the credentials in a Secret, in the Secret's
// annotations: when they were issued and expire, the request they were issued for (a hash, no
// secret), the rotation request they answered, and the renewal slot chosen for them. Every
// decision about the Secret is taken from it, so a restart decides as the last issuance did.
type Stamp struct {
	IssuedAt    time.Time
	Expiration  time.Time
	RequestHash string
	// Rotate is the rolekeeper.io/rotate value the credentials answered; "" for none.
	Rotate string
	// Slot is one of renewal.Choices; 0 when missing or out of range.
	Slot int
}

// ParseStamp reads the stamp from a Secret's annotations. issued is false when the issue time is
// missing or does not parse: the lifetime, and with it the renewal time, is then unknown. A
// missing or unparsable expiry is a zero Expiration (the credentials' own expiry, in the data,
// is what counts for AWS credentials).
func ParseStamp(annotations map[string]string) (st Stamp, issued bool) {
	at, err := time.Parse(time.RFC3339, annotations[rkv1.AnnotationIssuedAt])
	st = Stamp{IssuedAt: at, RequestHash: annotations[rkv1.AnnotationRequestHash], Rotate: annotations[rkv1.AnnotationRotate]}
	if exp, err := time.Parse(time.RFC3339, annotations[rkv1.AnnotationExpiration]); err == nil {
		st.Expiration = exp
	}
	if slot, err := strconv.Atoi(annotations[rkv1.AnnotationRenewalSlot]); err == nil && slot > 0 && slot < renewal.Choices {
		st.Slot = slot
	}
	return st, err == nil
}

// Annotate writes the stamp into annotations, as ParseStamp reads it.
func (st Stamp) Annotate(annotations map[string]string) {
	annotations[rkv1.AnnotationIssuedAt] = st.IssuedAt.UTC().Format(time.RFC3339)
	annotations[rkv1.AnnotationExpiration] = st.Expiration.UTC().Format(time.RFC3339)
	annotations[rkv1.AnnotationRequestHash] = st.RequestHash
	if st.Rotate != "" {
		annotations[rkv1.AnnotationRotate] = st.Rotate
	}
	if st.Slot > 0 {
		annotations[rkv1.AnnotationRenewalSlot] = strconv.Itoa(st.Slot)
	}
}
