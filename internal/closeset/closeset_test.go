package closeset

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

type closer struct {
	set    *Set[*closer]
	closed int
}

func (c *closer) Close() error {
	c.closed++
	c.set.Remove(c) // as a member that unregisters itself does
	return nil
}

func TestCloseAll(t *testing.T) {
	var s Set[*closer]
	a, b, gone := &closer{set: &s}, &closer{set: &s}, &closer{set: &s}
	s.Add(a)
	s.Add(b)
	s.Add(gone)
	s.Remove(gone)
	assert.Equal(t, 2, s.CloseAll())
	assert.Equal(t, 1, a.closed)
	assert.Equal(t, 1, b.closed)
	assert.Equal(t, 0, gone.closed)
	assert.Equal(t, 0, s.CloseAll(), "closed members removed themselves")
}
