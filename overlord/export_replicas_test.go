package overlord

// Driving returns how many jobs the service drives now.
func Driving(s *Service) int { return s.sched.count() }
