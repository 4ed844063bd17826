package imageinfo

import "encoding/binary"

// exifOrientation returns the EXIF orientation (1 to 8) of the JPEG whose
// first bytes are b, or 1 when b holds none or an invalid one. It walks the
// marker segments from SOI up to the first SOS or SOF, looks in each APP1
// "Exif" segment for tag 0x0112 in IFD0, and never reads outside b or the
// segment.
func exifOrientation(b []byte) int {
	if len(b) < 4 || b[0] != 0xff || b[1] != 0xd8 {
		return 1
	}
	for i := 2; i+4 <= len(b); {
		if b[i] != 0xff {
			return 1
		}
		marker := b[i+1]
		switch {
		case marker == 0xff: // fill byte
			i++
			continue
		case marker == 0xda, marker >= 0xc0 && marker <= 0xcf && marker != 0xc4 && marker != 0xc8 && marker != 0xcc:
			return 1 // SOS or SOFn: past the application segments
		case marker == 0x01, marker >= 0xd0 && marker <= 0xd7:
			i += 2 // markers without a length
			continue
		}
		n := int(binary.BigEndian.Uint16(b[i+2:]))
		if n < 2 {
			return 1
		}
		end := i + 2 + n
		if marker == 0xe1 {
			seg := b[i+4 : min(end, len(b))]
			if len(seg) >= 6 && string(seg[:6]) == "Exif\x00\x00" {
				if o := tiffOrientation(seg[6:]); o != 0 {
					return o
				}
			}
		}
		i = end
	}
	return 1
}

// tiffOrientation reads the orientation tag from IFD0 of the TIFF structure
// in t, or returns 0.
func tiffOrientation(t []byte) int {
	if len(t) < 8 {
		return 0
	}
	var bo binary.ByteOrder
	switch string(t[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return 0
	}
	if bo.Uint16(t[2:]) != 42 {
		return 0
	}
	off := uint64(bo.Uint32(t[4:]))
	if off+2 > uint64(len(t)) {
		return 0
	}
	count := uint64(bo.Uint16(t[off:]))
	entries := t[off+2:]
	for k := uint64(0); k < count && (k+1)*12 <= uint64(len(entries)); k++ {
		e := entries[k*12 : k*12+12]
		if bo.Uint16(e) != 0x0112 {
			continue
		}
		// Type SHORT, count 1: the value sits in the first two bytes of
		// the value field.
		if bo.Uint16(e[2:]) != 3 || bo.Uint32(e[4:]) != 1 {
			return 0
		}
		if o := int(bo.Uint16(e[8:])); o >= 1 && o <= 8 {
			return o
		}
		return 0
	}
	return 0
}
