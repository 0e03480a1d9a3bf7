package tracer

// idSet is a bounded set of recently written event ids. It remembers the
// last cap ids added and forgets the oldest first. It is not safe for
// concurrent use; the Sink guards it with its lock.
type idSet struct {
	m    map[string]struct{}
	ring []string // ids in the order they were added
	next int      // once the ring is full: the slot of the oldest id
}

func newIDSet(capacity int) *idSet {
	return &idSet{m: make(map[string]struct{}, capacity), ring: make([]string, 0, capacity)}
}

func (s *idSet) has(id string) bool {
	_, ok := s.m[id]
	return ok
}

// add remembers id, forgetting the oldest id if the set is full. The set
// keeps id: callers pass a string they do not modify or reuse.
func (s *idSet) add(id string) {
	if _, ok := s.m[id]; ok {
		return
	}
	if len(s.ring) < cap(s.ring) {
		s.ring = append(s.ring, id)
	} else {
		delete(s.m, s.ring[s.next])
		s.ring[s.next] = id
		s.next = (s.next + 1) % len(s.ring)
	}
	s.m[id] = struct{}{}
}

func (s *idSet) len() int { return len(s.m) }
