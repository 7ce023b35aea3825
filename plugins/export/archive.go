package export

import (
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
)

// MaxLineLength bounds one exported row. Rows longer than this (Amplitude
// caps each string at 1024 characters, but properties add up) are reported
// as errors and skipped.
const MaxLineLength = 4 << 20

// ErrLineTooLong is returned, wrapped, for a row longer than MaxLineLength.
var ErrLineTooLong = errors.New("row longer than the line limit")

// Archive reads an Export API answer: a zip of JSON-lines files, gzipped or
// plain. It reads one entry at a time, line by line, from a file (a zip is
// read from its end), so memory stays bounded whatever the archive's size.
type Archive struct {
	files []*zip.File
	next  int

	name string
	rc   io.ReadCloser
	gz   *gzip.Reader
	br   *bufio.Reader
	line int
	long []byte
}

// OpenArchive opens the zip held in r (size bytes).
func OpenArchive(r io.ReaderAt, size int64) (*Archive, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return nil, fmt.Errorf("export archive: %w", err)
	}
	a := &Archive{}
	for _, f := range zr.File {
		if !f.FileInfo().IsDir() {
			a.files = append(a.files, f)
		}
	}
	return a, nil
}

// Entries is the number of files in the archive.
func (a *Archive) Entries() int { return len(a.files) }

// Position names the current entry and line (1-based), for error messages
// and metadata.
func (a *Archive) Position() (entry string, line int) { return a.name, a.line }

// Next returns the next non-empty line of the archive, valid until the next
// call, or io.EOF after the last entry. An error wrapping ErrLineTooLong
// concerns that line alone: reading may go on. Any other error concerns the
// rest of the current entry, which is skipped: reading may go on with the
// next entry.
func (a *Archive) Next() ([]byte, error) {
	for {
		if a.br == nil {
			if a.next >= len(a.files) {
				return nil, io.EOF
			}
			if err := a.openEntry(a.files[a.next]); err != nil {
				a.next++
				a.closeEntry()
				return nil, err
			}
			a.next++
		}
		line, err := a.readLine()
		if err == io.EOF {
			a.closeEntry()
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrLineTooLong) {
				a.closeEntry()
			}
			return nil, fmt.Errorf("export archive: %s line %d: %w", a.name, a.line, err)
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		return line, nil
	}
}

func (a *Archive) openEntry(f *zip.File) error {
	a.name, a.line = f.Name, 0
	rc, err := f.Open()
	if err != nil {
		return fmt.Errorf("export archive: %s: %w", f.Name, err)
	}
	a.rc = rc
	br := bufio.NewReaderSize(rc, 64<<10)
	// Gzipped entries (the usual .json.gz) start with the gzip magic bytes;
	// plain JSON-lines entries are read as they are.
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("export archive: %s: %w", f.Name, err)
		}
		a.gz = gz
		br = bufio.NewReaderSize(gz, 64<<10)
	}
	a.br = br
	return nil
}

func (a *Archive) closeEntry() {
	if a.gz != nil {
		a.gz.Close()
	}
	if a.rc != nil {
		a.rc.Close()
	}
	a.rc, a.gz, a.br = nil, nil, nil
}

// readLine reads one line without its newline; ErrLineTooLong after skipping
// the rest of an overlong line.
func (a *Archive) readLine() ([]byte, error) {
	a.line++
	a.long = a.long[:0]
	for {
		chunk, err := a.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			if len(a.long)+len(chunk) > MaxLineLength {
				return nil, a.skipLine()
			}
			a.long = append(a.long, chunk...)
			continue
		}
		if err == io.EOF && len(chunk)+len(a.long) > 0 {
			err = nil // last line without a newline
		}
		if err != nil {
			return nil, err
		}
		if len(a.long)+len(chunk) > MaxLineLength {
			return nil, ErrLineTooLong
		}
		if len(a.long) > 0 {
			a.long = append(a.long, chunk...)
			chunk = a.long
		}
		return bytes.TrimSuffix(chunk, []byte{'\n'}), nil
	}
}

// skipLine discards the rest of an overlong line.
func (a *Archive) skipLine() error {
	a.long = a.long[:0]
	for {
		_, err := a.br.ReadSlice('\n')
		switch err {
		case bufio.ErrBufferFull:
			continue
		case nil, io.EOF:
			return ErrLineTooLong
		default:
			return err
		}
	}
}

// Close releases the current entry.
func (a *Archive) Close() error {
	a.closeEntry()
	a.next = len(a.files)
	return nil
}
