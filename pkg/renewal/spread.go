package renewal

import (
	"strconv"
	"sync"
	"time"
)

// Choices is how many renewal times an issuance chooses from. Each is Time with the seed of one
// slot: the same window, another pseudo-random point in it.
const Choices = 8

// Seed is the jitter seed of slot (0 to Choices-1) for an object: slot 0 is the object's UID
// itself, so a Secret that records no slot renews where it always did.
func Seed(uid string, slot int) string {
	if slot <= 0 || slot >= Choices {
		return uid
	}
	return uid + "#" + strconv.Itoa(slot)
}

// Spread keeps renewals that were issued together out of the same second.
//
// Independent pseudo-random points do not spread a small burst evenly: 100 renewals in a
// three-minute window put three or more into some second almost every time. Spread counts the
// renewals due in each second that this process knows of, and an issuance takes, of its Choices
// slots, the one whose second holds the fewest. The slot chosen is stored with the credentials, so
// the renewal time stays a function of the Secret: a restart computes the same time from it, and
// only has to relearn the counts (Observe) as it reconciles. The counts are a hint; losing them
// makes the next choices less informed, never wrong.
//
// The zero value is ready to use and safe for concurrent use.
type Spread struct {
	mu    sync.Mutex
	count map[int64]int    // renewals due in each second (Unix)
	at    map[string]int64 // the second each object renews in
}

// Place chooses the slot for credentials issued at issued and expiring at expiration, records
// that key renews then and returns the slot and its renewal time.
func (sp *Spread) Place(key string, issued, expiration time.Time, p Policy, uid string) (int, time.Time) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.forget(key)
	best, bestAt := 0, time.Time{}
	for slot := range Choices {
		at := Time(issued, expiration, p, Seed(uid, slot))
		if slot == 0 || sp.count[at.Unix()] < sp.count[bestAt.Unix()] {
			best, bestAt = slot, at
		}
		if sp.count[at.Unix()] == 0 {
			break // an empty second: none can be better, and lower slots are preferred
		}
	}
	sp.record(key, bestAt)
	return best, bestAt
}

// Observe records that key renews at at, replacing what was known for it: how a restarted
// process learns the renewals already scheduled in the Secrets.
func (sp *Spread) Observe(key string, at time.Time) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if prev, ok := sp.at[key]; ok && prev == at.Unix() {
		return
	}
	sp.forget(key)
	sp.record(key, at)
}

// Forget drops key (its object is gone).
func (sp *Spread) Forget(key string) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.forget(key)
}

// peak returns the most renewals known in any one second, and how many seconds hold any.
func (sp *Spread) peak() (peak, seconds int) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	for _, n := range sp.count {
		peak = max(peak, n)
	}
	return peak, len(sp.count)
}

func (sp *Spread) record(key string, at time.Time) {
	if sp.count == nil {
		sp.count, sp.at = map[int64]int{}, map[string]int64{}
	}
	sec := at.Unix()
	sp.count[sec]++
	sp.at[key] = sec
}

func (sp *Spread) forget(key string) {
	sec, ok := sp.at[key]
	if !ok {
		return
	}
	delete(sp.at, key)
	if sp.count[sec]--; sp.count[sec] <= 0 {
		delete(sp.count, sec)
	}
}
