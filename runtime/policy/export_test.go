package policy

// ExplainWidth is explainWidth, for the tests of package policy_test,
// which can import the egress filter.
const ExplainWidth = explainWidth
