// Applies the saved theme before the first paint (loaded blocking in <head>).
(function () {
  try {
    var theme = localStorage.getItem("runwarden-theme");
    if (theme === "light" || theme === "dark") document.documentElement.dataset.theme = theme;
  } catch (e) { /* storage disabled: follow the system */ }
})();
