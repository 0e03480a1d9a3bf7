package tracer

import (
	"os"

	"golang.org/x/sys/unix"
)

// writeBack writes the n bytes of f from off to disk and waits for them,
// without forcing a journal commit or touching the rest of the file
// (sync_file_range): all a scratch file needs to keep its dirty pages few.
func writeBack(f *os.File, off, n int64) error {
	return unix.SyncFileRange(int(f.Fd()), off, n,
		unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
}
