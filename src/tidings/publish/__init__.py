"""Publishing: the Docusaurus digest and the renderer registry (``docusaurus``), Hugo, Jekyll,
Markdown and HTML (``formats``), and the static site with its feeds (``site``)."""
