package secretdata

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"sort"
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
	// DataDigest is DataDigest of the data written; RenderHash what shaped it besides the
	// credentials. Empty in Secrets written before they were recorded.
	DataDigest, RenderHash string
}

// ParseStamp reads the stamp from a Secret's annotations. issued is false when the issue time is
// missing or does not parse: the lifetime, and with it the renewal time, is then unknown. A
// missing or unparsable expiry is a zero Expiration (the credentials' own expiry, in the data,
// is what counts for AWS credentials).
func ParseStamp(annotations map[string]string) (st Stamp, issued bool) {
	at, err := time.Parse(time.RFC3339, annotations[rkv1.AnnotationIssuedAt])
	st = Stamp{IssuedAt: at, RequestHash: annotations[rkv1.AnnotationRequestHash], Rotate: annotations[rkv1.AnnotationRotate],
		DataDigest: annotations[rkv1.AnnotationDataDigest], RenderHash: annotations[rkv1.AnnotationRenderHash]}
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
	if st.DataDigest != "" {
		annotations[rkv1.AnnotationDataDigest] = st.DataDigest
	}
	if st.RenderHash != "" {
		annotations[rkv1.AnnotationRenderHash] = st.RenderHash
	}
}

// DataDigest is a digest of a Secret's data: keys and values, in key order. It identifies the
// data without revealing it (SHA-256 of high-entropy credentials), so that the data need not be
// kept to tell whether it changed.
func DataDigest(data map[string][]byte) string {
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	var n [8]byte
	for _, k := range keys {
		for _, part := range [][]byte{[]byte(k), data[k]} {
			binary.BigEndian.PutUint64(n[:], uint64(len(part)))
			h.Write(n[:])
			h.Write(part)
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}
