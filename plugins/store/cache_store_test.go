package store

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newCache(t *testing.T, yaml string) *storeCache {
	t.Helper()
	conf, err := storeCacheSpec().ParseYAML(yaml, nil)
	require.NoError(t, err)
	c, err := newStoreCacheFromParsed(conf, service.MockResources())
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func TestStoreCache(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "not", "yet")
	c := newCache(t, "path: "+filepath.Join(dir, "s.db")+"\nnamespace: ids\n")
	_, err := os.Stat(dir)
	require.NoError(t, err, "the folder is created on start")

	type op struct {
		name    string
		do      func() error
		wantErr error
	}
	ttl := time.Hour
	ops := []op{
		{"get absent", func() error { _, err := c.Get(ctx, "k"); return err }, service.ErrKeyNotFound},
		{"add new", func() error { return c.Add(ctx, "k", []byte("1"), nil) }, nil},
		{"add existing", func() error { return c.Add(ctx, "k", []byte("2"), nil) }, service.ErrKeyAlreadyExists},
		{"set overwrites", func() error { return c.Set(ctx, "k", []byte("3"), &ttl) }, nil},
		{"get", func() error {
			v, err := c.Get(ctx, "k")
			assert.Equal(t, "3", string(v))
			return err
		}, nil},
		{"delete", func() error { return c.Delete(ctx, "k") }, nil},
		{"get deleted", func() error { _, err := c.Get(ctx, "k"); return err }, service.ErrKeyNotFound},
		{"delete absent", func() error { return c.Delete(ctx, "k") }, nil},
	}
	for _, o := range ops {
		err := o.do()
		if o.wantErr == nil {
			assert.NoError(t, err, o.name)
		} else {
			assert.ErrorIs(t, err, o.wantErr, o.name)
		}
	}
}

func TestStoreCacheNamespacesAndDefaultTTL(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	a := newCache(t, "path: "+path+"\nnamespace: a\ndefault_ttl: 1ns\n")
	b := newCache(t, "path: "+path+"\nnamespace: b\n")
	assert.Same(t, a.db, b.db, "two caches on one file share it")
	require.NoError(t, a.Set(ctx, "k", []byte("a"), nil))
	require.NoError(t, b.Set(ctx, "k", []byte("b"), nil))
	_, err := a.Get(ctx, "k")
	assert.ErrorIs(t, err, service.ErrKeyNotFound, "default_ttl applies")
	require.NoError(t, a.Add(ctx, "k", []byte("again"), nil), "an expired key can be added again")
	v, err := b.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "b", string(v), "namespaces are separate")
}
