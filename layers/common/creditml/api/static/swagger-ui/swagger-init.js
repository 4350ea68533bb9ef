// Starts Swagger UI on /docs. A file of its own, not an inline script, so the page's
// Content-Security-Policy can allow scripts from 'self' only (creditml/api/routes/docs.py).
// The page names the document to show in data-openapi-url.
"use strict";
const root = document.getElementById("swagger-ui");
window.ui = SwaggerUIBundle({
  url: root.dataset.openapiUrl,
  domNode: root,
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  // The default shows a badge fetched from validator.swagger.io: a request to another
  // origin, which the policy refuses.
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
});
