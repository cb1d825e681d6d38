package facts

import "syscall"

// uname reads the kernel release and machine with uname(2).
func uname() (Uname, error) {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		return Uname{}, err
	}
	return Uname{Release: cString(u.Release[:]), Machine: cString(u.Machine[:])}, nil
}

// cString converts a NUL-terminated utsname field (int8 or uint8,
// depending on the architecture) to a string.
func cString[T int8 | uint8](field []T) string {
	b := make([]byte, 0, len(field))
	for _, c := range field {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}
