package tracer

import "math/bits"

// An idTable is the in-memory part of the index of the event ids of one
// log file (see idIndex): a compact open-addressing hash table (linear probing) of 8-byte entries,
// each the 32-bit hash of an id (see idHash) and the block of the id source
// its line starts in (see blockShift). The table holds no id: a lookup
// finds the entries whose hash matches, and the caller checks each against
// the file (see logFile.has), so a hash collision never makes the sink skip
// an event it did not write.
//
// Memory: 8 bytes per slot at a load factor between maxLoad/growth and
// maxLoad, 10 to 15 bytes per id (about 12 MB per million ids), against
// some 80 for a Go map of strings.
//
// An idTable is not safe for concurrent use.
type idTable struct {
	slots []uint64 // 0: empty; else h32<<32 | block
	n     int
	// limit, when set, is the most slots growth gives the table (the
	// idIndex seals it before it is fuller than maxLoad).
	limit int
}

const (
	// blockShift: an entry records the block of 1<<blockShift bytes of the
	// id source (json log, or text id sidecar) its line starts in, so that
	// 32 bits address a file of 1 TiB. The check reads that block and the
	// lines that start in it.
	blockShift = 8
	blockSize  = 1 << blockShift
	maxBlock   = 1<<32 - 1
	// maxSourceSize is the size of id source an entry can address; ids of
	// lines beyond it are not indexed (and so written again if redelivered).
	maxSourceSize = maxBlock << blockShift

	minSlots = 1024
	maxLoad  = 0.8 // grow beyond this load factor
	growth   = 1.5 // by this factor
)

// idHash returns the 64-bit hash of an id that the table and the id index
// sidecar use: FNV-1a followed by the MurmurHash3 finaliser, stable across
// processes and versions (the sidecar stores its top 32 bits).
func idHash[T string | []byte](id T) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= 1099511628211
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// idEntry is the table (and sidecar) entry of an id of hash h whose line
// starts at off in the id source; ok false if off is beyond maxSourceSize.
func idEntry(h uint64, off int64) (uint64, bool) {
	if off < 0 || off >= maxSourceSize {
		return 0, false
	}
	h32 := h >> 32
	if h32 == 0 {
		h32 = 1 // 0 marks an empty slot (and a commit in the sidecar)
	}
	return h32<<32 | uint64(off>>blockShift), true
}

// entryHash and entryBlock split an entry.
func entryHash(e uint64) uint32  { return uint32(e >> 32) }
func entryBlock(e uint64) uint32 { return uint32(e) }

// hash32 is the hash an entry of an id with 64-bit hash h holds.
func hash32(h uint64) uint32 {
	if h>>32 == 0 {
		return 1
	}
	return uint32(h >> 32)
}

// reserve makes room for n more entries without growing.
func (t *idTable) reserve(n int) {
	need := int(float64(t.n+n)/maxLoad) + 1
	if need > len(t.slots) {
		t.resize(max(need, minSlots))
	}
}

func (t *idTable) home(h32 uint32) int {
	hi, _ := bits.Mul64(uint64(h32)<<32, uint64(len(t.slots)))
	return int(hi)
}

// insert adds an entry. The same id may be added twice (a file written by
// an older version may hold it twice); lookups are not affected.
func (t *idTable) insert(e uint64) {
	if float64(t.n+1) > maxLoad*float64(len(t.slots)) {
		n := max(int(float64(len(t.slots))*growth), minSlots)
		if t.limit > len(t.slots) {
			n = min(n, t.limit)
		}
		t.resize(n)
	}
	i := t.home(entryHash(e))
	for t.slots[i] != 0 {
		if i++; i == len(t.slots) {
			i = 0
		}
	}
	t.slots[i] = e
	t.n++
}

func (t *idTable) resize(n int) {
	old := t.slots
	t.slots = make([]uint64, n)
	t.n = 0
	for _, e := range old {
		if e != 0 {
			t.insert(e)
		}
	}
}

// find calls check with the block of every entry of hash h32, until check
// returns true or an error.
func (t *idTable) find(h32 uint32, check func(block uint32) (bool, error)) (bool, error) {
	if t.n == 0 {
		return false, nil
	}
	i := t.home(h32)
	for {
		e := t.slots[i]
		if e == 0 {
			return false, nil
		}
		if entryHash(e) == h32 {
			if ok, err := check(entryBlock(e)); ok || err != nil {
				return ok, err
			}
		}
		if i++; i == len(t.slots) {
			i = 0
		}
	}
}

// len returns the number of entries.
func (t *idTable) len() int { return t.n }

// bytes returns the memory the table holds.
func (t *idTable) bytes() int { return 8 * len(t.slots) }
