package relay

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/cespare/xxhash/v2"
)

// registryShards spreads IDs over independent locks so lookups from many
// ingress goroutines and inserts from every event loop rarely meet. A power
// of two, so a shard is a mask away from the hash.
const registryShards = 256

// registry maps client IDs to their sessions. Safe for concurrent use: each
// shard has its own lock, held only for one map operation.
//
// The maps are keyed by the ID's 64-bit xxhash, not the ID: an entry is 16
// bytes instead of 24, one per idle client. A lookup checks the session's
// ID, so a hash shared by two IDs cannot misdeliver; and since the relay
// draws IDs itself, add refuses a taken hash and the caller draws again.
type registry struct {
	shards [registryShards]registryShard
}

type registryShard struct {
	mu sync.RWMutex
	m  map[uint64]*session // guarded by mu; keyed by xxhash of the ID
	// Pad to a cache line so neighbouring shards' locks do not share one.
	_ [64 - 32]byte
}

func (r *registry) shard(h uint64) *registryShard {
	return &r.shards[h&(registryShards-1)]
}

// get returns the open session with that ID, or nil.
func (r *registry) get(id string) *session {
	h := xxhash.Sum64String(id)
	sh := r.shard(h)
	sh.mu.RLock()
	s := sh.m[h]
	sh.mu.RUnlock()
	if s == nil || !s.hasID(id) {
		return nil
	}
	return s
}

// add inserts s under its ID and reports false if the ID's hash is taken
// (a 2^-64 event the caller answers by drawing another ID).
func (r *registry) add(s *session) bool {
	h := s.idHash
	sh := r.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.m == nil {
		sh.m = make(map[uint64]*session)
	}
	if _, taken := sh.m[h]; taken {
		return false
	}
	sh.m[h] = s
	return true
}

// remove deletes s, if it is still the session registered under its ID.
func (r *registry) remove(s *session) {
	h := s.idHash
	sh := r.shard(h)
	sh.mu.Lock()
	if sh.m[h] == s {
		delete(sh.m, h)
		if len(sh.m) == 0 {
			// Go maps never shrink: drop an empty one so a shard that
			// once held a crowd gives its memory back.
			sh.m = nil
		}
	}
	sh.mu.Unlock()
}

// len counts the sessions in the registry. It locks each shard in turn, so it
// is for stats and tests, not hot paths.
func (r *registry) len() int {
	n := 0
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}

// page appends to dst up to limit IDs that come after cursor in (shard, ID)
// order and returns the cursor of the next page, "" after the last. An ID
// connected for the whole listing appears exactly once, however the set
// changes between pages; IDs that come or go meanwhile may or may not.
func (r *registry) page(cursor string, limit int, dst []string) ([]string, string, error) {
	shard, after, err := parseCursor(cursor)
	if err != nil {
		return dst, "", err
	}
	var scratch []string
	for ; shard < registryShards; shard, after = shard+1, "" {
		sh := &r.shards[shard]
		scratch = scratch[:0]
		sh.mu.RLock()
		for _, s := range sh.m {
			if id := s.ID(); id > after {
				scratch = append(scratch, id)
			}
		}
		sh.mu.RUnlock()
		slices.Sort(scratch)
		room := limit - len(dst)
		if len(scratch) > room {
			dst = append(dst, scratch[:room]...)
			return dst, fmt.Sprintf("%d.%s", shard, scratch[room-1]), nil
		}
		dst = append(dst, scratch...)
		if len(dst) == limit && shard+1 < registryShards {
			return dst, fmt.Sprintf("%d.", shard+1), nil
		}
	}
	return dst, "", nil
}

// parseCursor reads a listing cursor: "" for the start, else "SHARD.ID".
func parseCursor(c string) (int, string, error) {
	if c == "" {
		return 0, "", nil
	}
	num, id, ok := strings.Cut(c, ".")
	n, err := strconv.Atoi(num)
	if !ok || err != nil || n < 0 || n >= registryShards || (id != "" && !ValidID(id)) {
		return 0, "", fmt.Errorf("invalid cursor %q: pass back the cursor a previous page returned, or nothing to start", c)
	}
	return n, id, nil
}
