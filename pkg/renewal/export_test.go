package renewal

// Peak is the busiest second the spread knows of and how many seconds hold renewals, for tests.
func (sp *Spread) Peak() (peak, seconds int) { return sp.peak() }
