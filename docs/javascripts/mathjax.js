// MathJax 3 for the guides (pymdownx.arithmatex, generic mode: \( … \) inline, \[ … \]
// displayed) and the tutorials' notebook cells ($ … $ and $$ … $$). Every element is
// searched but code (MathJax skips <pre> and <code>); the guides have no bare dollar signs.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true,
  },
};

// Material's instant navigation swaps pages without reloading: typeset each new page.
document$.subscribe(() => {
  if (window.MathJax.typesetPromise) {
    MathJax.startup.output.clearCache();
    MathJax.typesetClear();
    MathJax.texReset();
    MathJax.typesetPromise();
  }
});
