// The site's search scorer (book/_config.yml, html_search_scorer): Sphinx's default
// weights, plus one rule. A search whose words are one of "Find your error"'s entry
// titles (an error message, matched as a section title) lists that entry first. Without
// it, a lesson that merely uses the same words ties with the entry, and the tie goes to
// the alphabetically first title: "00 · Start here" before "Find your error".
var Scorer = {
  score: (result) => {
    const [docname, , anchor, , score] = result;
    return docname === "errors" && anchor ? score + 20 : score;
  },
  objNameMatch: 11,
  objPartialMatch: 6,
  objPrio: { 0: 15, 1: 5, 2: -5 },
  objPrioDefault: 0,
  title: 15,
  partialTitle: 7,
  term: 5,
  partialTerm: 2,
};
