// Package closeset keeps the open things that shutdown must close by hand:
// hijacked client connections (connstate) and event-stream bodies (proxy).
package closeset

import "sync"

// Set is a set of open closers. It is safe for concurrent use; the zero
// value is an empty set.
type Set[T interface {
	comparable
	Close() error
}] struct {
	mu   sync.Mutex
	open map[T]struct{}
}

// Add puts c in the set.
func (s *Set[T]) Add(c T) {
	s.mu.Lock()
	if s.open == nil {
		s.open = make(map[T]struct{})
	}
	s.open[c] = struct{}{}
	s.mu.Unlock()
}

// Remove takes c out of the set (a no-op when it is not there).
func (s *Set[T]) Remove(c T) {
	s.mu.Lock()
	delete(s.open, c)
	s.mu.Unlock()
}

// CloseAll closes every member, outside the lock (Close may call Remove),
// and returns how many there were.
func (s *Set[T]) CloseAll() int {
	s.mu.Lock()
	members := make([]T, 0, len(s.open))
	for c := range s.open {
		members = append(members, c)
	}
	s.mu.Unlock()
	for _, c := range members {
		c.Close()
	}
	return len(members)
}
